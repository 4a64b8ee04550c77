// releaseOrder-5.lua against real Redis: a cancel or an expiry gives the order's units back to
// stock and to the user's limit exactly once — also when sweepers and shoppers race — every
// refusal writes nothing, and released stock never relists a delisted item.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LifecycleEvents, OrderLifecycle } from '../../../src/orders/lifecycle.ts';
import type { Order } from '../../../src/orders/order.ts';
import { parseStreamEntries } from '../../../src/orders/outbox.ts';
import type { PayOrderReply } from '../../../src/stock/scripts/pay-order.ts';
import { releaseOrder } from '../../../src/stock/scripts/release-order.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

// Near the real clock: order records expire at an absolute time derived from `now`.
const NOW = Math.floor(Date.now() / 1000) * 1000;
const PAYMENT_WINDOW_MS = 900_000;
const DEADLINE = NOW + PAYMENT_WINDOW_MS;

const lua = luaFixture({ now: NOW, salePrefix: 'release', connections: 8, postgres: true });
const { pool, newSaleId, release } = lua;
const { loadSale, place, snapshot, available, liveQuantities: live } = lua;

let redis: Redis;

/** payOrder as the order's owner calls it. */
function pay(order: Order, paymentRef: string, now: number, client?: Redis): Promise<PayOrderReply> {
  return lua.pay(order, order.userId, paymentRef, now, client);
}

beforeAll(async () => {
  ({ redis } = await lua.open());
});

afterAll(() => lua.close());

describe('releaseOrder: releasing', () => {
  it('when the owner cancels before the deadline, then the units return to stock and to the limit, and the cancelled order is in the outbox', async () => {
    const saleId = newSaleId('cancel');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 2);
    const keys = lua.shardKeys(saleId);

    expect(await release(order, 'u-1', NOW + 1_000)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });

    expect(await available(saleId)).toBe(10);
    expect(await live(saleId)).toEqual({});
    expect(await redis.hmget(keys.order(order.id), 'status', 'cancelledAt')).toEqual(['cancelled', String(NOW + 1_000)]);
    expect(await redis.zscore(keys.deadlines, order.id)).toBeNull();
    const outbox = await redis.xrange(keys.outbox, '-', '+');
    expect(outbox).toHaveLength(2);
    const { entries, malformed } = parseStreamEntries(saleId, outbox.slice(1));
    expect(malformed).toEqual([]);
    expect(entries[0]?.order).toMatchObject({ id: order.id, status: 'cancelled', cancelledAt: NOW + 1_000, quantity: 2, amount: order.amount });
  });

  it('when one of a user\'s two orders is cancelled, then only its units leave the user\'s live quantity, and one more unit may be bought', async () => {
    const saleId = newSaleId('partial');
    await loadSale(saleId, [item({ perUserLimit: 3 })]);
    const first = await place(saleId, 'u-1', 1);
    await place(saleId, 'u-1', 2);

    expect(await release(first, 'u-1', NOW)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });

    // The reserve checks the cap against this count (its own tests show it): 2 of 3, one more allowed.
    expect(await live(saleId)).toEqual({ 'u-1': '2' });
  });

  it('when an operator (no user id) cancels an order, then it is released as cancelled', async () => {
    const saleId = newSaleId('operator');
    await loadSale(saleId);
    const order = await place(saleId);

    expect(await release(order, '', NOW)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });

    expect(await redis.hmget(lua.shardKeys(saleId).order(order.id), 'status', 'cancelledAt', 'expiredAt')).toEqual(['cancelled', String(NOW), null]);
    expect(await available(saleId)).toBe(10);
  });

  it('when the owner cancels at the deadline, then the order expires instead', async () => {
    const saleId = newSaleId('late-cancel');
    await loadSale(saleId);
    const order = await place(saleId);

    expect(await release(order, 'u-1', DEADLINE)).toEqual({ code: 'RELEASED', status: 'expired', reopened: false });
    expect(await available(saleId)).toBe(10);
  });

  it('when an order of a sold-out item is released, then the item is reported reopened and sells again', async () => {
    const saleId = newSaleId('reopened');
    await loadSale(saleId, [item({ stock: 2 })]);
    const order = await place(saleId, 'u-1', 2);

    expect(await release(order, 'u-1', NOW)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: true });

    // Listed with its units back: the reserve sells them again (its own tests show it).
    expect(await redis.hmget(lua.shardKeys(saleId).item, 'available', 'delisted')).toEqual(['2', '']);
  });

  it.each([
    { when: 'the low-stock rule delisted the item', reason: 'low_stock' },
    { when: 'an operator delisted the item', reason: 'operator' },
  ] as const)('when $when, then released stock is not reported reopened and the item stays delisted', async ({ reason }) => {
    const saleId = newSaleId('stays-delisted');
    await loadSale(saleId, [item({ stock: 2 })]);
    const order = await place(saleId, 'u-1', 2);
    await lua.delist(saleId, reason);
    expect(await redis.hget(lua.shardKeys(saleId).item, 'delisted')).toBe(reason);

    expect(await release(order, 'u-1', NOW)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });

    expect(await redis.hmget(lua.shardKeys(saleId).item, 'available', 'delisted')).toEqual(['2', reason]);
  });
});

describe('releaseOrder: refusals write nothing', () => {
  interface Case {
    readonly when: string;
    readonly reply: { readonly code: string; readonly status?: string };
    readonly arrange: (saleId: string) => Promise<() => Promise<{ readonly code: string }>>;
  }
  const cases: Case[] = [
    {
      when: 'the order does not exist',
      reply: { code: 'ORDER_NOT_FOUND' },
      arrange: async (saleId) => () => release({ id: 'no-such-order', saleId, sku: 'phone-x', shard: 0 }, 'u-1', NOW),
    },
    {
      when: 'another user cancels the order',
      reply: { code: 'ORDER_NOT_FOUND' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        return () => release(order, 'u-2', NOW);
      },
    },
    {
      when: 'a cancelled order is cancelled again',
      reply: { code: 'ALREADY', status: 'cancelled' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        await release(order, 'u-1', NOW);
        return () => release(order, 'u-1', NOW + 1);
      },
    },
    {
      when: 'an order that a late cancel expired is cancelled again',
      reply: { code: 'ORDER_EXPIRED' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        expect(await release(order, 'u-1', DEADLINE)).toMatchObject({ code: 'RELEASED', status: 'expired' });
        return () => release(order, 'u-1', DEADLINE + 1);
      },
    },
    {
      when: 'a paid order is cancelled',
      reply: { code: 'ORDER_ALREADY_PAID' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        expect(await pay(order, 'pay-1', NOW)).toEqual({ code: 'PAID' });
        return () => release(order, 'u-1', NOW + 1);
      },
    },
    {
      when: 'a cancel carrying an earlier clock arrives after the sweeper expired the order',
      reply: { code: 'ORDER_EXPIRED' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        expect(await lua.expire([order], DEADLINE)).toMatchObject({ orderIds: [order.id] });
        return () => release(order, 'u-1', DEADLINE - 1);
      },
    },
  ];

  it.each(cases)('when $when, then $reply.code is returned and nothing is written', async ({ reply, arrange }) => {
    const saleId = newSaleId('refusal');
    await loadSale(saleId);
    const act = await arrange(saleId);
    const before = await snapshot(saleId);

    expect(await act()).toEqual(reply);

    expect(await snapshot(saleId)).toEqual(before);
  });

  it('when a cancelled order is cancelled again after its deadline (a retried request), then the answer is still ALREADY cancelled', async () => {
    const saleId = newSaleId('retry-after-deadline');
    await loadSale(saleId);
    const order = await place(saleId);
    await release(order, 'u-1', NOW);
    const before = await snapshot(saleId);

    expect(await release(order, 'u-1', DEADLINE + 1)).toEqual({ code: 'ALREADY', status: 'cancelled' });
    expect(await snapshot(saleId)).toEqual(before);
  });
});

describe('releaseOrder: exactly once under concurrency', () => {
  it('when 20 cancels of one order race over 8 connections, then its units come back once', async () => {
    const saleId = newSaleId('cancel-race');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 3);

    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => release(order, 'u-1', NOW + i, pool[i % pool.length])));

    expect(replies.filter((r) => JSON.stringify(r) === JSON.stringify({ code: 'RELEASED', status: 'cancelled', reopened: false }))).toHaveLength(1);
    expect(replies.filter((r) => JSON.stringify(r) === JSON.stringify({ code: 'ALREADY', status: 'cancelled' }))).toHaveLength(19);
    expect(await available(saleId)).toBe(10);
    expect(await live(saleId)).toEqual({});
    expect(await redis.xlen(lua.shardKeys(saleId).outbox)).toBe(2);
  });

  it('when 8 operators cancel the same 137 orders at their deadline at once, then each order expires once and all stock is back', async () => {
    const saleId = newSaleId('sweepers');
    await loadSale(saleId, [item({ stock: 137, perUserLimit: 1 })]);
    const orders: Order[] = [];
    for (let i = 0; i < 137; i++) orders.push(await place(saleId, `u-${i}`));
    const keys = lua.shardKeys(saleId);
    expect(await available(saleId)).toBe(0);

    const replies = await Promise.all(pool.flatMap((client) => orders.map((order) => release(order, '', DEADLINE, client))));

    const released = replies.filter((r) => r.code === 'RELEASED');
    expect(released).toHaveLength(137);
    expect(released.filter((r) => r.code === 'RELEASED' && r.reopened)).toHaveLength(1);
    expect(released.every((r) => r.code === 'RELEASED' && r.status === 'expired')).toBe(true);
    expect(replies.filter((r) => r.code === 'ORDER_EXPIRED')).toHaveLength(137 * 7);
    expect(await available(saleId)).toBe(137);
    expect(await live(saleId)).toEqual({});
    expect(await redis.zcard(keys.deadlines)).toBe(0);
    expect(await redis.xlen(keys.outbox)).toBe(137 * 2);
  });

  it('when orders and cancels interleave over 8 connections, then at rest available = stock − live quantity', async () => {
    const saleId = newSaleId('storm');
    await loadSale(saleId, [item({ stock: 200, perUserLimit: 3 })]);
    const keys = lua.shardKeys(saleId);

    // Every user orders; every third cancels (on its own connection) while the others keep
    // ordering, then orders again.
    const outcomes = await Promise.all(
      Array.from({ length: 90 }, async (_, i) => {
        const client = pool[i % pool.length];
        const userId = `u-${i}`;
        const quantity = 1 + (i % 2);
        const first = await place(saleId, userId, quantity);
        if (i % 3 !== 0) return [first];
        expect(await release(first, userId, NOW, client)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });
        return [await place(saleId, userId, quantity)];
      }),
    );

    const kept = outcomes.flat();
    const liveQuantity = kept.reduce((total, order) => total + order.quantity, 0);
    expect(await available(saleId)).toBe(200 - liveQuantity);
    const perUser = await live(saleId);
    expect(Object.values(perUser).reduce((total, q) => total + Number(q), 0)).toBe(liveQuantity);
    expect(await redis.zcard(keys.deadlines)).toBe(kept.length);
  });
});

describe('releaseOrder: cancel against payment', () => {
  it('when cancel and pay race for 40 orders over 8 connections, then each order has exactly one winner and only cancelled orders give their units back', async () => {
    const saleId = newSaleId('cancel-vs-pay');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 12 })]);
    const keys = lua.shardKeys(saleId);
    const orders: Order[] = [];
    for (let i = 0; i < 40; i++) orders.push(await place(saleId, `u-${i % 8}`, 1 + (Math.floor(i / 8) % 3)));
    expect(await available(saleId)).toBe(100 - orders.reduce((total, order) => total + order.quantity, 0));

    const replies = await Promise.all(
      orders.map(async (order, i) => {
        const cancelCall = () => release(order, order.userId, NOW + 1, pool[i % pool.length]);
        const payCall = () => pay(order, `ref-${i}`, NOW + 1, pool[(i + 5) % pool.length]);
        if (i % 2 === 0) {
          const [cancelled, paid] = await Promise.all([cancelCall(), payCall()]);
          return { cancelled, paid };
        }
        const [paid, cancelled] = await Promise.all([payCall(), cancelCall()]);
        return { cancelled, paid };
      }),
    );

    const payWon = JSON.stringify({ cancelled: { code: 'ORDER_ALREADY_PAID' }, paid: { code: 'PAID' } });
    const cancelWon = JSON.stringify({ cancelled: { code: 'RELEASED', status: 'cancelled', reopened: false }, paid: { code: 'ORDER_CANCELLED' } });
    const statuses = await Promise.all(orders.map((order) => redis.hget(keys.order(order.id), 'status')));
    const paidPerUser = new Map<string, number>();
    let paidUnits = 0;
    replies.forEach((reply, i) => {
      const order = orders[i]!;
      const outcome = JSON.stringify(reply);
      expect([payWon, cancelWon], `order ${i}`).toContain(outcome);
      expect(statuses[i], `order ${i}`).toBe(outcome === payWon ? 'paid' : 'cancelled');
      if (outcome === payWon) {
        paidUnits += order.quantity;
        paidPerUser.set(order.userId, (paidPerUser.get(order.userId) ?? 0) + order.quantity);
      }
    });

    expect(await available(saleId)).toBe(100 - paidUnits);
    expect(await live(saleId)).toEqual(Object.fromEntries([...paidPerUser].map(([user, units]) => [user, String(units)])));
    expect(await redis.zcard(keys.deadlines)).toBe(0);
    // Each order: its reservation and exactly one final state.
    expect(await redis.xlen(keys.outbox)).toBe(40 * 2);
  });
});

describe('releaseOrder: delisted items stay delisted (invariant 6)', () => {
  it.each(['low_stock', 'operator'] as const)('when released stock lifts an item delisted (%s) far above its level, then it stays delisted: only an operator relists or restocks', async (reason) => {
    const saleId = newSaleId('delisted-holds');
    // low_stock: the third order takes the item down to its level (3 units), and the rule delists it.
    await loadSale(saleId, [item({ stock: 10, perUserLimit: 3, ...(reason === 'low_stock' && { lowStock: { units: 3 } }) })]);
    const keys = lua.shardKeys(saleId);
    const orders = [await place(saleId, 'u-1', 3), await place(saleId, 'u-2', 3), await place(saleId, 'u-3', 1)];
    if (reason === 'operator') await lua.delist(saleId, reason);

    expect(await release(orders[0]!, 'u-1', NOW)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });
    expect(await release(orders[1]!, 'u-2', DEADLINE)).toEqual({ code: 'RELEASED', status: 'expired', reopened: false });

    expect(await redis.hmget(keys.item, 'available', 'delisted', 'delistedAt')).toEqual(['9', reason, String(NOW)]);
  });

  it('when an order is released while the item still has stock, then it is not reported reopened; when it had none, it is', async () => {
    const saleId = newSaleId('reopened-only-from-zero');
    await loadSale(saleId, [item({ stock: 3 })]);
    const one = await place(saleId, 'u-1', 1);
    const two = await place(saleId, 'u-2', 2);
    expect(await available(saleId)).toBe(0);

    expect(await release(one, 'u-1', NOW)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: true });
    expect(await release(two, 'u-2', NOW)).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });
    expect(await available(saleId)).toBe(3);
  });
});

describe('releaseOrder: through OrderLifecycle', () => {
  function lifecycleOn(client: Redis, events: LifecycleEvents): OrderLifecycle {
    return lua.lifecycleOn(client, events);
  }

  function counting(): { events: LifecycleEvents; released: string[]; reopened: string[] } {
    const released: string[] = [];
    const reopened: string[] = [];
    const events: LifecycleEvents = {
      onReleased: ({ orderIds }, reason) => void released.push(...orderIds.map((id) => `${id}:${reason}`)),
      onPaid: () => undefined,
      onReopened: async (saleId, sku) => void reopened.push(`${saleId}/${sku}`),
    };
    return { events, released, reopened };
  }

  it('when the owner cancels one order 20 times at once over 8 connections, then one cancel changes it, the rest are no-ops, and the release is reported once', async () => {
    const saleId = newSaleId('lifecycle-double-cancel');
    await loadSale(saleId, [item({ stock: 3 })]);
    const order = await place(saleId, 'u-1', 3);
    const { events, released, reopened } = counting();
    const lifecycles = pool.map((client) => lifecycleOn(client, events));

    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => lifecycles[i % lifecycles.length]!.cancel(order.id, 'u-1', NOW + 1)));

    expect(outcomes.filter((o) => o.kind === 'done' && o.changed)).toHaveLength(1);
    expect(outcomes.filter((o) => o.kind === 'done' && !o.changed && o.order.status === 'cancelled')).toHaveLength(19);
    expect(released).toEqual([`${order.id}:cancelled`]);
    expect(reopened).toEqual([`${saleId}/phone-x`]);
    expect(await available(saleId)).toBe(3);
    expect(await live(saleId)).toEqual({});
  });

  it('when the owner cancels at the deadline, then the shopper hears ORDER_EXPIRED and the release is reported once as an expiry', async () => {
    const saleId = newSaleId('lifecycle-late-cancel');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 2);
    const { events, released } = counting();
    const lifecycle = lifecycleOn(redis, events);

    expect(await lifecycle.cancel(order.id, 'u-1', DEADLINE)).toEqual({ kind: 'refused', code: 'ORDER_EXPIRED' });
    expect(await lifecycle.cancel(order.id, 'u-1', DEADLINE + 1)).toEqual({ kind: 'refused', code: 'ORDER_EXPIRED' });

    expect(released).toEqual([`${order.id}:expired`]);
    expect(await available(saleId)).toBe(10);
  });

  it('when a cancelled order is cancelled again after its deadline, then the lifecycle answers the no-op the API promises (200 cancelled), not a refusal', async () => {
    const saleId = newSaleId('lifecycle-retry-after-deadline');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 1);
    const { events, released } = counting();
    const lifecycle = lifecycleOn(redis, events);
    expect(await lifecycle.cancel(order.id, 'u-1', NOW)).toMatchObject({ kind: 'done', changed: true, order: { status: 'cancelled' } });

    expect(await lifecycle.cancel(order.id, 'u-1', DEADLINE + 1)).toMatchObject({ kind: 'done', changed: false, order: { status: 'cancelled' } });

    expect(released).toEqual([`${order.id}:cancelled`]);
    expect(await available(saleId)).toBe(10);
  });
});

describe('releaseOrder: payment outages and oversell rejections', () => {
  it('when a payment outage holds deadlines, then a cancel past the deadline cancels (not expires) and gives the units back once', async () => {
    const saleId = newSaleId('outage');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 2);
    const reply = await releaseOrder(lua.scripts, { saleId, orderId: order.id, sku: order.sku, shard: 0 }, { userId: 'u-1', now: DEADLINE + 5_000, outage: true });
    expect(reply).toEqual({ code: 'RELEASED', status: 'cancelled', reopened: false });
    expect(await redis.hget(lua.shardKeys(saleId).order(order.id), 'status')).toBe('cancelled');
    expect(await available(saleId)).toBe(10);
  });

  it('when the order was rejected by the oversell guard, then a cancel is refused ORDER_REJECTED and writes nothing', async () => {
    const saleId = newSaleId('rejected');
    await loadSale(saleId);
    const order = await place(saleId);
    await redis.hset(lua.shardKeys(saleId).order(order.id), 'status', 'rejected_oversell');
    const before = await snapshot(saleId);
    expect(await release(order, 'u-1', NOW)).toEqual({ code: 'ORDER_REJECTED' });
    expect(await snapshot(saleId)).toEqual(before);
  });
});
