// The rebuild's arithmetic (src/recovery/plan.ts), apart from Redis: K > 1 splits, the held
// low-stock units, partial losses against surviving shards, shard of an order, the outbox overlay.
import { describe, expect, it } from 'vitest';
import type { Order } from '../../src/orders/order.ts';
import { effectiveLiveOrders, planItem, shardOfOrder, type RecordedItem, type RecordedSale } from '../../src/recovery/plan.ts';
import { homeShard, shardTag } from '../../src/stock/keys.ts';
import { mintOrderId } from '../../src/stock/order-id.ts';

const NOW = 1_800_000_000_000;
const item: RecordedItem = { sku: 'tv', unitPrice: 100, perUserLimit: 5, total: 45, lowStock: { units: 5 }, shards: 4 };
const sale: RecordedSale = { id: 'd11', startsAt: NOW - 1000, endsAt: NOW + 1000, paymentWindowMs: 60_000, closedAt: null, items: [item] };

function live(userId: string, quantity: number, status: Order['status'] = 'pending_payment'): Order {
  const K = item.shards;
  return {
    id: mintOrderId(shardTag(sale.id, item.sku, homeShard(userId, K))),
    saleId: sale.id,
    sku: item.sku,
    userId,
    quantity,
    unitPrice: 100,
    amount: 100 * quantity,
    status,
    idempotencyKey: null,
    createdAt: NOW - 500,
    expiresAt: NOW + 59_500,
  };
}

const base = { sale, item, survivors: new Map(), accepted: new Map(), closedAt: null, now: NOW };

describe('planItem', () => {
  it('K = 4, all lost: the level held on shard 0, the rest spread as loading spreads it, users on their home shard', () => {
    const orders = [live('a', 3), live('b', 2), live('c', 1)];
    const plans = planItem({ ...base, lost: [0, 1, 2, 3], live: orders });
    // 45 − 6 live = 39: 5 held, 34 spread 9/9/8/8.
    expect(plans.map((plan) => plan.item.available)).toEqual([9, 9, 8, 8]);
    expect(plans[0]!.item).toMatchObject({ held: 5, total: 45, lowUnits: 5, delisted: '' });
    expect(plans[1]!.item.held).toBeUndefined();
    for (const order of orders) {
      const home = homeShard(order.userId, 4);
      expect(plans[home]!.users.get(order.userId)).toBe(order.quantity);
      expect(plans[home]!.pending.map((o) => o.id)).toContain(order.id);
    }
  });

  it('K = 4, nothing above the level: delisted by the rule, the level still held', () => {
    const plans = planItem({ ...base, lost: [0, 1, 2, 3], live: [live('a', 5), live('b', 5), live('c', 5), live('d', 5), live('e', 5), live('f', 5), live('g', 5), live('h', 5)] });
    expect(plans.map((plan) => plan.item.available)).toEqual([0, 0, 0, 0]);
    expect(plans.map((plan) => plan.item.delisted)).toEqual(['low_stock', 'low_stock', 'low_stock', 'low_stock']);
    expect(plans[0]!.item.held).toBe(5);
  });

  it('one shard lost: it gets what the survivors do not hold, and the survivors\' listing', () => {
    const survivor = (available: number, held = 0) => ({ available, outPending: 0, held, delisted: '', delistedAt: '' });
    const survivors = new Map([
      [0, survivor(3, 5)],
      [1, survivor(4)],
      [3, { ...survivor(2), outPending: 1 }],
    ]);
    const plans = planItem({ ...base, lost: [2], survivors, live: [live('a', 3)] });
    // 45 − 3 = 42 left; survivors hold 5 + 3 + 4 + 2 + 1 = 15.
    expect(plans).toHaveLength(1);
    expect(plans[0]!.item).toMatchObject({ shard: 2, available: 27, delisted: '' });
    expect(plans[0]!.item.held).toBeUndefined();
  });

  it('an operator relist releases the held units; an operator delist is kept', () => {
    const relisted = planItem({ ...base, item: { ...item, listing: { listing: 'relisted', at: 1 } }, lost: [0, 1, 2, 3], live: [] });
    expect(relisted[0]!.item.held).toBe(0);
    expect(relisted.reduce((sum, plan) => sum + Number(plan.item.available), 0)).toBe(45);
    const delisted = planItem({ ...base, item: { ...item, listing: { listing: 'delisted', at: 7 } }, lost: [0, 1, 2, 3], live: [] });
    expect(delisted.map((plan) => [plan.item.delisted, plan.item.delistedAt])).toEqual(Array(4).fill(['operator', 7]));
  });
});

describe('shardOfOrder and the outbox overlay', () => {
  it('finds the shard by the tag an id carries, an older id by its shopper\'s home', () => {
    const order = live('a', 1);
    expect(shardOfOrder(order, 4)).toBe(homeShard('a', 4));
    expect(shardOfOrder({ ...order, id: '0190a0b0-0000-7000-8000-000000000000' }, 4)).toBe(homeShard('a', 4));
  });

  it('takes the newest state of waiting orders, never reviving a final one', () => {
    const pending = live('a', 1);
    const paidInRedis = { ...pending, status: 'paid' as const, paidAt: NOW };
    const fresh = live('b', 2);
    const cancelledFresh = { ...live('c', 1), status: 'cancelled' as const };
    const endedInPostgres = live('d', 1);
    const result = effectiveLiveOrders([pending], [paidInRedis, fresh, cancelledFresh, endedInPostgres], new Set([endedInPostgres.id]));
    expect(result.map((order) => [order.userId, order.status]).sort()).toEqual([
      ['a', 'paid'],
      ['b', 'pending_payment'],
    ]);
    // A stale pending entry does not undo Postgres's payment.
    expect(effectiveLiveOrders([paidInRedis], [pending], new Set())[0]!.status).toBe('paid');
  });
});
