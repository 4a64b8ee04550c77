// expireDue.lua against real Redis (key layout 2): the sweeper's batch expiry on one stock shard
// gives back the units of every due pending order in one call, to that shard, exactly once also
// when sweepers race, reports the shard reopened at most once per batch (only from no units and
// only when listed), drops ids whose record is gone, and leaves every other order alone.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Order } from '../../../src/orders/order.ts';
import { parseStreamEntries } from '../../../src/orders/outbox.ts';
import { expireDue, type ExpireDueReply } from '../../../src/stock/scripts/expire-due.ts';
import { UnexpectedScriptReply } from '../../../src/stock/scripts/unexpected-reply.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

// Near the real clock: order records expire at an absolute time derived from `now`.
const NOW = Math.floor(Date.now() / 1000) * 1000;
const DEADLINE = NOW + 900_000;

const lua = luaFixture({ now: NOW, salePrefix: 'expire-due', connections: 8 });
const { pool, newSaleId, pay, release, expire } = lua;
const { loadSale, place, snapshot, available, liveQuantities: live } = lua;

let redis: Redis;


const fieldsOf = (flat: readonly string[]) => Object.fromEntries(flat.flatMap((value, i) => (i % 2 === 0 ? [[value, flat[i + 1] ?? '']] : [])));

beforeAll(async () => {
  ({ redis } = await lua.open());
});

afterAll(() => lua.close());

describe('expireDue: expiring', () => {
  it('when due orders of one shard are expired in one call, then each gives its units back once, leaves the deadlines, and its expired state is in the outbox', async () => {
    const saleId = newSaleId('one-shard');
    await loadSale(saleId);
    const keys = lua.shardKeys(saleId);
    const orders = [await place(saleId, 'u-1', 2), await place(saleId, 'u-2', 1), await place(saleId, 'u-1', 3)];

    const reply = await expire(orders, DEADLINE);

    expect(reply).toEqual({ code: 'EXPIRED', units: 6, reopened: false, orderIds: orders.map((order) => order.id), gone: [] });
    expect(await available(saleId)).toBe(10);
    expect(await live(saleId)).toEqual({});
    expect(await redis.zcard(keys.deadlines)).toBe(0);
    for (const order of orders) {
      expect(await redis.hmget(keys.order(order.id), 'status', 'expiredAt')).toEqual(['expired', String(DEADLINE)]);
    }
    const finals = (await redis.xrange(keys.outbox, '-', '+')).slice(3);
    expect(finals).toHaveLength(3);
    const { entries, malformed } = parseStreamEntries(saleId, finals);
    expect(malformed).toEqual([]);
    expect(entries.map((entry) => [entry.order.id, entry.order.status])).toEqual(orders.map((order) => [order.id, 'expired']));
    // The full new state, field for field: the writer upserts from it alone.
    expect(fieldsOf(finals[0]?.[1] ?? [])).toEqual(await redis.hgetall(keys.order(orders[0]!.id)));
  });

  it('when orders sit on two shards of an item, then each shard’s batch gives its units back to that shard only', async () => {
    const saleId = newSaleId('two-shards');
    await loadSale(saleId, [item({ stock: 20, perUserLimit: 5, stockShards: 2 })]);
    const byShard: Order[][] = [[], []];
    for (let i = 0; byShard[0]!.length < 2 || byShard[1]!.length < 2; i++) {
      const order = await place(saleId, `u-${i}`, 1 + (i % 2));
      byShard[order.shard]!.push(order);
    }
    const availableOf = async (shard: number) => Number(await redis.hget(lua.shardKeys(saleId, 'phone-x', shard).item, 'available'));
    const before = [await availableOf(0), await availableOf(1)];

    const reply = await expire(byShard[1]!, DEADLINE);

    const units = byShard[1]!.reduce((total, order) => total + order.quantity, 0);
    expect(reply).toMatchObject({ units, orderIds: byShard[1]!.map((order) => order.id) });
    expect([await availableOf(0), await availableOf(1)]).toEqual([before[0], before[1]! + units]);
    expect(await redis.zcard(lua.shardKeys(saleId, 'phone-x', 0).deadlines)).toBe(byShard[0]!.length);
    expect(await redis.zcard(lua.shardKeys(saleId, 'phone-x', 1).deadlines)).toBe(0);
  });

  it('when a shard with no units gets units back from several orders of one batch, then it is reported reopened once, and is listed with them', async () => {
    const saleId = newSaleId('reopened');
    await loadSale(saleId, [item({ stock: 3, perUserLimit: 1 })]);
    const orders = [await place(saleId, 'u-1'), await place(saleId, 'u-2'), await place(saleId, 'u-3')];
    expect(await available(saleId)).toBe(0);

    expect(await expire(orders, DEADLINE)).toEqual({ code: 'EXPIRED', units: 3, reopened: true, orderIds: orders.map((order) => order.id), gone: [] });

    expect(await redis.hmget(lua.shardKeys(saleId).item, 'available', 'delisted')).toEqual(['3', '']);
  });

  it.each([
    { when: 'the low-stock rule delisted the item', reason: 'low_stock' },
    { when: 'an operator delisted the item', reason: 'operator' },
  ] as const)('when $when, then expired units are not reported reopened and the item stays delisted', async ({ reason }) => {
    const saleId = newSaleId('stays-delisted');
    await loadSale(saleId, [item({ stock: 2, perUserLimit: 1 })]);
    const orders = [await place(saleId, 'u-1'), await place(saleId, 'u-2')];
    await lua.delist(saleId, reason);

    expect(await expire(orders, DEADLINE)).toMatchObject({ units: 2, reopened: false });

    expect(await redis.hmget(lua.shardKeys(saleId).item, 'available', 'delisted')).toEqual(['2', reason]);
  });
});

describe('expireDue: orders that are not due and pending are left alone', () => {
  it('when the batch holds orders not yet due, paid, cancelled, expired and gone, then only the due pending one expires and nothing else is written', async () => {
    const saleId = newSaleId('mixed');
    await loadSale(saleId);
    const keys = lua.shardKeys(saleId);
    const [dueOne, paid, cancelled, expired, later] = [
      await place(saleId, 'u-1'),
      await place(saleId, 'u-2'),
      await place(saleId, 'u-3'),
      await place(saleId, 'u-4'),
      await place(saleId, 'u-5'),
    ];
    expect(await pay(paid!, 'u-2', 'ref-2', NOW)).toEqual({ code: 'PAID' });
    expect(await release(cancelled!, 'u-3', NOW)).toMatchObject({ code: 'RELEASED' });
    expect(await pay(expired!, 'u-4', 'late', DEADLINE)).toMatchObject({ code: 'EXPIRED_NOW' });
    // Not due: its deadline is a millisecond after the sweeper's clock.
    await redis.hset(keys.order(later!.id), 'expiresAt', DEADLINE + 1);
    const before = await snapshot(saleId);
    // A pending order whose record's TTL ran out: still on the deadlines, nothing to give back.
    const gone = { id: '0190d6a4-0000-7000-8000-000000000000', saleId, sku: 'phone-x', shard: 0 };
    await redis.zadd(keys.deadlines, DEADLINE - 5, gone.id);

    const reply = await expire([paid!, cancelled!, expired!, later!, gone, dueOne!], DEADLINE);

    expect(reply).toEqual({ code: 'EXPIRED', units: 1, reopened: false, orderIds: [dueOne!.id], gone: [gone.id] });
    const after = await snapshot(saleId);
    for (const order of [paid!, cancelled!, expired!, later!]) expect(after[keys.order(order.id)]).toEqual(before[keys.order(order.id)]);
    expect(await redis.zrange(keys.deadlines, 0, -1)).toEqual([later!.id]);
    expect(await available(saleId)).toBe(10 - 2);
  });

  it('when nothing in the batch is due, then EXPIRED with no items is answered and nothing is written', async () => {
    const saleId = newSaleId('none-due');
    await loadSale(saleId);
    const orders = [await place(saleId, 'u-1'), await place(saleId, 'u-2')];
    const before = await snapshot(saleId);

    expect(await expire(orders, DEADLINE - 1)).toEqual({ code: 'EXPIRED', units: 0, reopened: false, orderIds: [], gone: [] });

    expect(await snapshot(saleId)).toEqual(before);
  });

  it("when the shard's slot holds an order of another item or shard, then WRONG_SHARD is a loud error and nothing is written, not even for the due orders before it", async () => {
    const saleId = newSaleId('wrong-shard');
    await loadSale(saleId);
    const first = await place(saleId, 'u-1');
    const misnamed = await place(saleId, 'u-2');
    // Only a bug (or a tag collision) could put such a record in this slot.
    await redis.hset(lua.shardKeys(saleId).order(misnamed.id), 'shard', '1');
    const before = await snapshot(saleId);

    const call = expireDue(lua.scriptsFor(), { saleId, sku: 'phone-x', shard: 0 }, [first.id, misnamed.id], DEADLINE);

    await expect(call).rejects.toThrow(UnexpectedScriptReply);
    const code = 'WRONG_SHARD';
    await expect(call).rejects.toThrow(`["${code}","${misnamed.id}"]`);
    expect(await snapshot(saleId)).toEqual(before);
  });
});

describe('expireDue: exactly once under concurrency', () => {
  it('when 8 sweepers expire the same 300 orders of a sold-out shard at once, then each order expires once, the shard reopens once, and all stock is back', async () => {
    const saleId = newSaleId('sweepers');
    await loadSale(saleId, [item({ stock: 300, perUserLimit: 1 })]);
    const keys = lua.shardKeys(saleId);
    const orders: Order[] = [];
    for (let i = 0; i < 300; i++) orders.push(await place(saleId, `u-${i}`));
    expect(await available(saleId)).toBe(0);

    // Each sweeper walks the orders in batches of 50, starting from a different place.
    const replies = await Promise.all(
      pool.map(async (client, lane) => {
        const mine: ExpireDueReply[] = [];
        for (let b = 0; b < 6; b++) {
          const start = ((b + lane) % 6) * 50;
          mine.push(await expire(orders.slice(start, start + 50), DEADLINE, client));
        }
        return mine;
      }),
    );

    const batches = replies.flat();
    const expiredIds = batches.flatMap((entry) => entry.orderIds);
    expect(expiredIds).toHaveLength(300);
    expect(new Set(expiredIds).size).toBe(300);
    expect(batches.reduce((units, entry) => units + entry.units, 0)).toBe(300);
    expect(batches.filter((entry) => entry.reopened)).toHaveLength(1);
    expect(await available(saleId)).toBe(300);
    expect(await live(saleId)).toEqual({});
    expect(await redis.zcard(keys.deadlines)).toBe(0);
    expect(await redis.xlen(keys.outbox)).toBe(300 * 2);
  });

  it('when payments and cancels race a batch expiry at the deadline over 8 connections, then each order has one winner and only unpaid ones give their units back, once', async () => {
    const saleId = newSaleId('pay-cancel-vs-batch');
    await loadSale(saleId, [item({ stock: 120, perUserLimit: 1 })]);
    const keys = lua.shardKeys(saleId);
    const orders: Order[] = [];
    for (let i = 0; i < 120; i++) orders.push(await place(saleId, `u-${i}`));

    // Order i: paid just before the deadline (i % 3 = 0), cancelled just before it (1), left (2);
    // the sweeper expires all of them in batches of 40, on its own connections.
    const [shoppers, sweeps] = await Promise.all([
      Promise.all(
        orders.map((order, i) => {
          const client = pool[i % 6];
          if (i % 3 === 0) return pay(order, order.userId, `ref-${i}`, DEADLINE - 1, client);
          if (i % 3 === 1) return release(order, order.userId, DEADLINE - 1, client);
          return Promise.resolve(undefined);
        }),
      ),
      Promise.all([0, 1, 2].map((b) => expire(orders.slice(b * 40, b * 40 + 40), DEADLINE, pool[6 + (b % 2)]))),
    ]);

    const expiredBySweeper = new Set(sweeps.flatMap((reply) => reply.orderIds));
    const statuses = await Promise.all(orders.map((order) => redis.hget(keys.order(order.id), 'status')));
    let paid = 0;
    orders.forEach((order, i) => {
      const status = statuses[i];
      const shopper = shoppers[i];
      if (expiredBySweeper.has(order.id)) {
        expect(status, `order ${i}`).toBe('expired');
        // The shopper came too late: the order had expired.
        if (shopper) expect(shopper.code, `order ${i}`).toBe('ORDER_EXPIRED');
      } else {
        expect(status, `order ${i}`).toBe(i % 3 === 0 ? 'paid' : 'cancelled');
        expect(shopper?.code, `order ${i}`).toBe(i % 3 === 0 ? 'PAID' : 'RELEASED');
      }
      if (status === 'paid') paid++;
    });
    // Every order left alone by the shoppers expired.
    for (let i = 2; i < 120; i += 3) expect(expiredBySweeper.has(orders[i]!.id), `order ${i}`).toBe(true);
    expect(await available(saleId)).toBe(120 - paid);
    expect(Object.keys(await live(saleId)).length).toBe(paid);
    expect(await redis.zcard(keys.deadlines)).toBe(0);
    expect(await redis.xlen(keys.outbox)).toBe(120 * 2);
  });
});
