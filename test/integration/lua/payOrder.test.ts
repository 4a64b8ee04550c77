// payOrder-5.lua against real Redis: a payment before the deadline pays the order once, a late
// one expires it and gives its stock back once, every refusal writes nothing, and payments
// racing each other, a cancel or the expiry at the deadline have exactly one winner.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { ExpirySweeper } from '../../../src/orders/expiry-sweeper.ts';
import type { LifecycleEvents } from '../../../src/orders/lifecycle.ts';
import type { Order } from '../../../src/orders/order.ts';
import { parseStreamEntries } from '../../../src/orders/outbox.ts';
import { shardRefsOf } from '../../../src/sales/sale.ts';
import { payOrder } from '../../../src/stock/scripts/pay-order.ts';
import type { ReleaseOrderReply } from '../../../src/stock/scripts/release-order.ts';
import type { TestContext } from '../../support/context.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

// Near the real clock: order records expire at an absolute time derived from `now`.
const NOW = Math.floor(Date.now() / 1000) * 1000;
const PAYMENT_WINDOW_MS = 900_000;
const DEADLINE = NOW + PAYMENT_WINDOW_MS;

const lua = luaFixture({ now: NOW, salePrefix: 'pay', connections: 8, postgres: true });
const { pool, newSaleId, pay } = lua;
const { loadSale, place, snapshot, available } = lua;

let ctx: TestContext;
let prefix: string;
let redis: Redis;

/** releaseOrder as the owner calls it: a cancel. */
function cancel(order: Order, now: number, client?: Redis): Promise<ReleaseOrderReply> {
  return lua.release(order, order.userId, now, client);
}

/** expireDue as the sweeper calls it, on a batch of one: whether it expired the order now. */
async function sweep(order: Order, now: number, client?: Redis): Promise<{ readonly swept: boolean }> {
  const reply = await lua.expire([order], now, client);
  return { swept: reply.orderIds.includes(order.id) };
}

const fieldsOf = (flat: readonly string[]) => Object.fromEntries(flat.flatMap((value, i) => (i % 2 === 0 ? [[value, flat[i + 1] ?? '']] : [])));
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

beforeAll(async () => {
  ({ ctx, prefix, redis } = await lua.open());
});

afterAll(() => lua.close());

describe('payOrder: paying', () => {
  it('when the owner pays before the deadline, then the order is paid, leaves the deadlines and the paid order is in the outbox, stock untouched', async () => {
    const saleId = newSaleId('paid');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 2);
    const keys = lua.shardKeys(saleId);

    expect(await pay(order, 'u-1', 'alipay-123', DEADLINE - 1)).toEqual({ code: 'PAID' });

    expect(await redis.hmget(keys.order(order.id), 'status', 'paidAt', 'paymentRef')).toEqual(['paid', String(DEADLINE - 1), 'alipay-123']);
    expect(await redis.zscore(keys.deadlines, order.id)).toBeNull();
    expect(await available(saleId)).toBe(8);
    expect(await redis.hget(keys.users, 'u-1')).toBe('2');
    const outbox = await redis.xrange(keys.outbox, '-', '+');
    expect(outbox).toHaveLength(2);
    const { entries, malformed } = parseStreamEntries(saleId, outbox.slice(1));
    expect(malformed).toEqual([]);
    expect(entries[0]?.order).toMatchObject({ id: order.id, status: 'paid', paidAt: DEADLINE - 1, paymentRef: 'alipay-123', quantity: 2 });
    // The full new state, field for field: the writer upserts from it alone.
    expect(fieldsOf(outbox[1]?.[1] ?? [])).toEqual(await redis.hgetall(keys.order(order.id)));
  });

  it('when an operator (no user id) confirms the payment, then the order is paid', async () => {
    const saleId = newSaleId('operator');
    await loadSale(saleId);
    const order = await place(saleId);

    expect(await pay(order, '', 'manual-1', NOW)).toEqual({ code: 'PAID' });
    expect(await redis.hget(lua.shardKeys(saleId).order(order.id), 'status')).toBe('paid');
  });

  it('when the payment arrives at the deadline, then the order expires instead, its stock and limit come back, and paying again says expired', async () => {
    const saleId = newSaleId('late');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 2);
    const keys = lua.shardKeys(saleId);

    expect(await pay(order, 'u-1', 'alipay-123', DEADLINE)).toEqual({ code: 'EXPIRED_NOW', reopened: false });

    expect(await redis.hmget(keys.order(order.id), 'status', 'expiredAt', 'paidAt')).toEqual(['expired', String(DEADLINE), null]);
    expect(await available(saleId)).toBe(10);
    expect(await redis.hgetall(keys.users)).toEqual({});
    expect(await redis.zcard(keys.deadlines)).toBe(0);
    const last = (await redis.xrange(keys.outbox, '-', '+')).slice(1);
    expect(parseStreamEntries(saleId, last).entries[0]?.order).toMatchObject({ id: order.id, status: 'expired', expiredAt: DEADLINE });
    expect(fieldsOf(last[0]?.[1] ?? [])).toEqual(await redis.hgetall(keys.order(order.id)));

    const before = await snapshot(saleId);
    expect(await pay(order, 'u-1', 'alipay-123', DEADLINE + 1)).toEqual({ code: 'ORDER_EXPIRED' });
    expect(await snapshot(saleId)).toEqual(before);
  });

  it('when a late payment expires the order of a sold-out item, then the item is reported reopened; of a delisted one, not', async () => {
    const saleId = newSaleId('late-reopened');
    await loadSale(saleId, [item({ stock: 2 })]);
    const soldOut = await place(saleId, 'u-1', 2);
    expect(await pay(soldOut, 'u-1', 'ref', DEADLINE)).toEqual({ code: 'EXPIRED_NOW', reopened: true });

    const delistedSale = newSaleId('late-delisted');
    await loadSale(delistedSale, [item({ stock: 2 })]);
    const delisted = await place(delistedSale, 'u-1', 2);
    await lua.delist(delistedSale, 'operator');
    expect(await pay(delisted, 'u-1', 'ref', DEADLINE)).toEqual({ code: 'EXPIRED_NOW', reopened: false });
    expect(await redis.hmget(lua.shardKeys(delistedSale).item, 'available', 'delisted')).toEqual(['2', 'operator']);
  });
});

describe('payOrder: refusals write nothing', () => {
  interface Case {
    readonly when: string;
    readonly reply: { readonly code: string };
    readonly arrange: (saleId: string) => Promise<() => Promise<{ readonly code: string }>>;
  }
  const cases: Case[] = [
    {
      when: 'the same payment is confirmed twice',
      reply: { code: 'ALREADY_PAID' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        expect(await pay(order, 'u-1', 'ref-1', NOW)).toEqual({ code: 'PAID' });
        return () => pay(order, 'u-1', 'ref-1', NOW + 1);
      },
    },
    {
      when: 'a paid order is paid again with another reference',
      reply: { code: 'ORDER_ALREADY_PAID' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        expect(await pay(order, 'u-1', 'ref-1', NOW)).toEqual({ code: 'PAID' });
        return () => pay(order, 'u-1', 'ref-2', NOW + 1);
      },
    },
    {
      when: 'the order does not exist',
      reply: { code: 'ORDER_NOT_FOUND' },
      arrange: async (saleId) => () => pay({ id: 'no-such-order', saleId, sku: 'phone-x', shard: 0 }, 'u-1', 'ref-1', NOW),
    },
    {
      when: 'another user pays the order',
      reply: { code: 'ORDER_NOT_FOUND' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        return () => pay(order, 'u-2', 'ref-1', NOW);
      },
    },
    {
      when: 'the order was cancelled',
      reply: { code: 'ORDER_CANCELLED' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        await cancel(order, NOW);
        return () => pay(order, 'u-1', 'ref-1', NOW + 1);
      },
    },
    {
      when: 'the sweeper expired the order',
      reply: { code: 'ORDER_EXPIRED' },
      arrange: async (saleId) => {
        const order = await place(saleId);
        expect(await sweep(order, DEADLINE)).toEqual({ swept: true });
        return () => pay(order, 'u-1', 'ref-1', DEADLINE + 1);
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
});

describe('payOrder: one winner under concurrency', () => {
  it('when 20 payments with different references race over 8 connections, then exactly one pays', async () => {
    const saleId = newSaleId('pay-race');
    await loadSale(saleId);
    const order = await place(saleId);

    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => pay(order, 'u-1', `ref-${i}`, NOW, pool[i % pool.length])));

    expect(replies.filter((r) => same(r, { code: 'PAID' }))).toHaveLength(1);
    expect(replies.filter((r) => same(r, { code: 'ORDER_ALREADY_PAID' }))).toHaveLength(19);
    const winner = replies.findIndex((r) => same(r, { code: 'PAID' }));
    expect(await redis.hget(lua.shardKeys(saleId).order(order.id), 'paymentRef')).toBe(`ref-${winner}`);
    expect(await redis.xlen(lua.shardKeys(saleId).outbox)).toBe(2);
  });

  it('when payments and cancels of one order race over 8 connections, then one of them wins and the stock matches the winner', async () => {
    const saleId = newSaleId('pay-vs-cancel');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 3);

    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const client = pool[i % pool.length];
        return i % 2 === 0 ? pay(order, 'u-1', 'ref-1', NOW, client) : cancel(order, NOW, client);
      }),
    );

    const paid = replies.filter((r) => same(r, { code: 'PAID' })).length;
    const cancelled = replies.filter((r) => same(r, { code: 'RELEASED', status: 'cancelled', reopened: false })).length;
    expect(paid + cancelled).toBe(1);
    const status = await redis.hget(lua.shardKeys(saleId).order(order.id), 'status');
    expect(status).toBe(paid === 1 ? 'paid' : 'cancelled');
    expect(await available(saleId)).toBe(paid === 1 ? 7 : 10);
    expect(await redis.xlen(lua.shardKeys(saleId).outbox)).toBe(2);
  });

  it('when late payments race the sweeper over 8 connections, then the order expires once and its units come back once', async () => {
    const saleId = newSaleId('pay-vs-sweeper');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 3);

    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const client = pool[i % pool.length];
        return i % 2 === 0 ? pay(order, 'u-1', 'ref-1', DEADLINE, client) : sweep(order, DEADLINE, client);
      }),
    );

    const releases = replies.filter((r) => ('code' in r ? r.code === 'EXPIRED_NOW' : r.swept));
    expect(releases).toHaveLength(1);
    expect(await available(saleId)).toBe(10);
    expect(await redis.hgetall(lua.shardKeys(saleId).users)).toEqual({});
    expect(await redis.xlen(lua.shardKeys(saleId).outbox)).toBe(2);
  });
});

describe('payOrder: payment against expiry at the deadline', () => {
  /** Payments' clocks around the deadline; the sweeper's is always the deadline itself. */
  const OFFSETS = [-1, 0, 1] as const;
  const ORDERS = 50;
  const USERS = 10;

  it('when pay and expire race for 50 orders over 8 connections, paying just before, at and just after the deadline, then each order has one winner and only expired ones give their units back, once', async () => {
    const saleId = newSaleId('pay-vs-expire');
    await loadSale(saleId, [item({ stock: 200, perUserLimit: 15 })]);
    const keys = lua.shardKeys(saleId);
    const orders: Order[] = [];
    for (let i = 0; i < ORDERS; i++) orders.push(await place(saleId, `u-${i % USERS}`, 1 + (Math.floor(i / 3) % 3)));
    const reserved = orders.reduce((total, order) => total + order.quantity, 0);
    expect(await available(saleId)).toBe(200 - reserved);

    // Pay and expire of one order on different connections; half the orders fire expire first.
    const replies = await Promise.all(
      orders.map(async (order, i) => {
        const offset = OFFSETS[i % 3] ?? 0;
        const payCall = () => pay(order, order.userId, `ref-${i}`, DEADLINE + offset, pool[i % pool.length]);
        const expireCall = () => sweep(order, DEADLINE, pool[(i + 3) % pool.length]);
        if (Math.floor(i / 3) % 2 === 0) {
          const [paid, expired] = await Promise.all([payCall(), expireCall()]);
          return { paid, expired };
        }
        const [expired, paid] = await Promise.all([expireCall(), payCall()]);
        return { paid, expired };
      }),
    );

    const allowed = [
      // Payment first, before the deadline: paid; the sweeper then leaves it alone.
      JSON.stringify({ paid: { code: 'PAID' }, expired: { swept: false } }),
      // Payment first, at or after the deadline: it expires the order; the sweeper finds it done.
      JSON.stringify({ paid: { code: 'EXPIRED_NOW', reopened: false }, expired: { swept: false } }),
      // Sweeper first: expired; the payment comes too late.
      JSON.stringify({ paid: { code: 'ORDER_EXPIRED' }, expired: { swept: true } }),
    ];
    const statuses = await Promise.all(orders.map((order) => redis.hget(keys.order(order.id), 'status')));
    const paidPerUser = new Map<string, number>();
    let paidUnits = 0;
    replies.forEach((reply, i) => {
      const order = orders[i]!;
      expect(allowed, `order ${i}`).toContain(JSON.stringify(reply));
      const paidNow = JSON.stringify(reply.paid) === JSON.stringify({ code: 'PAID' });
      // A payment at or after the deadline never wins.
      if ((OFFSETS[i % 3] ?? 0) >= 0) expect(paidNow, `order ${i}`).toBe(false);
      expect(statuses[i], `order ${i}`).toBe(paidNow ? 'paid' : 'expired');
      if (paidNow) {
        paidUnits += order.quantity;
        paidPerUser.set(order.userId, (paidPerUser.get(order.userId) ?? 0) + order.quantity);
      }
    });

    // Units of expired orders back exactly once, of paid ones never: to stock and to each user's limit.
    expect(await available(saleId)).toBe(200 - paidUnits);
    expect(await redis.hgetall(keys.users)).toEqual(Object.fromEntries([...paidPerUser].map(([user, units]) => [user, String(units)])));
    expect(await redis.zcard(keys.deadlines)).toBe(0);
    // One final entry per order in the outbox, carrying the winner's status.
    const { entries } = parseStreamEntries(saleId, await redis.xrange(keys.outbox, '-', '+'));
    const finals = entries.filter((entry) => entry.order.status !== 'pending_payment');
    expect(finals).toHaveLength(ORDERS);
    expect(new Set(finals.map((entry) => entry.order.id)).size).toBe(ORDERS);
    for (const entry of finals) expect(entry.order.status).toBe(statuses[orders.findIndex((order) => order.id === entry.order.id)]);
  });

  it('when OrderLifecycle.pay races two expiry sweepers for 30 orders around the deadline, then each expired order is reported released once and no paid one ever is', async () => {
    const saleId = newSaleId('lifecycle-vs-sweepers');
    const sale = await loadSale(saleId, [item({ stock: 30, perUserLimit: 3 })]);
    const keys = lua.shardKeys(saleId);
    const orders: Order[] = [];
    for (let i = 0; i < 30; i++) orders.push(await place(saleId, `u-${i % USERS}`, 1));
    expect(await available(saleId)).toBe(0);

    const released = new Map<string, string[]>();
    let paidEvents = 0;
    let reopenings = 0;
    const events: LifecycleEvents = {
      onReleased: ({ orderIds }, reason) => orderIds.forEach((id) => released.set(id, [...(released.get(id) ?? []), reason])),
      onPaid: () => void paidEvents++,
      onReopened: async () => void reopenings++,
    };
    const liveShards = async () => shardRefsOf(sale);
    const lifecycles = pool.map((client) => lua.lifecycleOn(client, events));
    const logger = createLogger(ctx.config);
    const sweepers = [0, 1].map((lane) => new ExpirySweeper(pool[lane]!, lifecycles[lane]!, prefix, liveShards, logger));

    const [payments, swept] = await Promise.all([
      Promise.all(orders.map((order, i) => lifecycles[(i % 6) + 2]!.pay(order.id, order.userId, `ref-${i}`, DEADLINE + (OFFSETS[i % 3] ?? 0)))),
      Promise.all(sweepers.map((sweeper) => sweeper.runOnce(DEADLINE))),
    ]);

    const statuses = await Promise.all(orders.map((order) => redis.hget(keys.order(order.id), 'status')));
    let paid = 0;
    orders.forEach((order, i) => {
      const outcome = payments[i]!;
      const status = statuses[i];
      expect(status, `order ${i}`).toMatch(/^(paid|expired)$/);
      if (status === 'paid') {
        paid++;
        expect(outcome, `order ${i}`).toMatchObject({ kind: 'done', changed: true, order: { status: 'paid' } });
        expect(released.get(order.id), `order ${i}`).toBeUndefined();
      } else {
        expect(outcome, `order ${i}`).toEqual({ kind: 'refused', code: 'ORDER_EXPIRED' });
        expect(released.get(order.id), `order ${i}`).toEqual(['expired']);
      }
    });
    expect(paidEvents).toBe(paid);
    // The sweepers' counts cover the expiries the payments did not do themselves.
    expect(swept.reduce((total, n) => total + n, 0)).toBeLessThanOrEqual(30 - paid);
    expect(await available(saleId)).toBe(30 - paid);
    // The sold-out item became available again once, if anything expired at all.
    expect(reopenings).toBe(paid === 30 ? 0 : 1);
    expect(await redis.zcard(keys.deadlines)).toBe(0);
  });
});

describe('payOrder: payment outages and oversell rejections', () => {
  it('when a payment outage holds deadlines, then a payment past the deadline pays the order instead of expiring it', async () => {
    const saleId = newSaleId('outage');
    await loadSale(saleId);
    const order = await place(saleId, 'u-1', 2);
    const keys = lua.shardKeys(saleId);
    const reply = await payOrder(lua.scripts, { saleId, orderId: order.id, sku: order.sku, shard: 0 }, { userId: 'u-1', paymentRef: 'psp-late', now: DEADLINE + 5_000, outage: true });
    expect(reply).toEqual({ code: 'PAID' });
    expect(await redis.hmget(keys.order(order.id), 'status', 'paymentRef')).toEqual(['paid', 'psp-late']);
    expect(await available(saleId)).toBe(8);
  });

  it('when the order was rejected by the oversell guard, then a payment is refused ORDER_REJECTED and writes nothing', async () => {
    const saleId = newSaleId('rejected');
    await loadSale(saleId);
    const order = await place(saleId);
    await redis.hset(lua.shardKeys(saleId).order(order.id), 'status', 'rejected_oversell');
    const before = await snapshot(saleId);
    expect(await pay(order, 'u-1', 'psp-1', NOW)).toEqual({ code: 'ORDER_REJECTED' });
    expect(await snapshot(saleId)).toEqual(before);
  });
});
