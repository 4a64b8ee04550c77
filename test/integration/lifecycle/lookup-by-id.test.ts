// Key layout 2: reading, paying and cancelling an order go straight to its shard's slot, found
// from the order id alone (its last 8 hex digits are the shard's tag) — no scan of the live sales,
// shown with MONITOR while several other sales are live. Units go back to the shard the order's
// record names. Sales are loaded by the catalog and orders made by the reserve, as in production. An order Redis no longer holds is answered from Postgres.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../../src/db/pool.ts';
import type { LifecycleEvents, OrderLifecycle, Released } from '../../../src/orders/lifecycle.ts';
import { OrderStore } from '../../../src/orders/order-store.ts';
import { OrderWriter } from '../../../src/orders/order-writer.ts';
import { OrderRepository } from '../../../src/orders/repository.ts';
import { SaleRepository } from '../../../src/sales/repository.ts';
import { homeShard, orderKeyOf, shardKeys, tagHex, userOrdersKey } from '../../../src/stock/keys.ts';
import { mintOrderId } from '../../../src/stock/order-id.ts';
import type { TestContext } from '../../support/context.ts';
import { luaFixture, saleDefinition, saleItem as item } from '../../support/lua-fixtures.ts';
import { monitorRedis } from '../../support/monitor.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const K = 4;

const lua = luaFixture({ now: NOW, salePrefix: 'lookup', postgres: true });

let ctx: TestContext;
let prefix: string;
let redis: Redis;
let pg: Pool;
let store: OrderStore;
let lifecycle: OrderLifecycle;
const released: Released[] = [];

const events: LifecycleEvents = { onReleased: (r) => void released.push(r), onPaid: () => undefined, onReopened: async () => undefined };

beforeAll(async () => {
  const opened = await lua.open();
  ({ ctx, prefix, redis } = opened);
  pg = opened.pg!;
  store = new OrderStore(redis, prefix, new OrderRepository(pg));
  lifecycle = lua.lifecycleOn(redis, events);
});

afterAll(() => lua.close());

/** A live sale with a 4-shard hot item and a 1-shard one, loaded by the catalog, plus `others` other live sales with an order each. */
async function liveSales(label: string, others = 5) {
  const saleId = lua.newSaleId(label);
  await lua.loadSale(saleId, [item({ sku: 'hot', stock: 40, perUserLimit: 3, stockShards: K }), item({ sku: 'cold', stock: 10 })]);
  for (let i = 0; i < others; i++) {
    const other = lua.newSaleId(`${label}-other`);
    await lua.loadSale(other, [item({ sku: 'hot', stock: 8, stockShards: 2 })]);
    await lua.place(other, 'bystander', 1, 'hot');
  }
  return saleId;
}

/** A user whose home shard of a K-shard item is `shard`. */
function userOnShard(shard: number, tag: string): string {
  for (let i = 0; ; i++) if (homeShard(`${tag}-${i}`, K) === shard) return `${tag}-${i}`;
}

describe('lookups by id', () => {
  it('when orders sit on every shard of a hot item, then each is found by its id, from its own slot, with its shard', async () => {
    const saleId = await liveSales('every-shard');
    for (let shard = 0; shard < K; shard++) {
      const userId = userOnShard(shard, `s${shard}`);
      const order = await lua.place(saleId, userId, 1, 'hot');
      expect(order.shard).toBe(shard);
      expect(order.id.slice(-8)).toBe(tagHex(shardKeys(prefix, saleId, 'hot', shard).tag));
      expect(await store.locate(order.id)).toEqual({ order, inRedis: true });
    }
  });

  it('when an id is not a UUID, or a UUID whose tag names no order, then nothing is found and nothing throws', async () => {
    expect(await store.locate('not-an-id')).toBeUndefined();
    expect(await store.locate(mintOrderId(0xdeadbeef))).toBeUndefined();
  });

  it('when Redis no longer holds a persisted order, then Postgres answers, and pay or cancel decide on its final state', async () => {
    const saleId = lua.newSaleId('postgres');
    const sale = await lua.loadSale(saleId, [item({ sku: 'cold', stock: 10 })]);
    expect(await new SaleRepository(pg).insert(sale)).toBe(true);
    const order = await lua.place(saleId, 'u-pg', 1, 'cold');
    expect(await lifecycle.cancel(order.id, 'u-pg', NOW + 1)).toMatchObject({ kind: 'done', changed: true });
    const cancelled = await store.fromRedis(order.id);
    await new OrderWriter(pg).write(saleId, [cancelled!]);
    await redis.del(orderKeyOf(prefix, order.id)!);

    const located = await store.locate(order.id);
    expect(located).toMatchObject({ inRedis: false, order: { id: order.id, status: 'cancelled' } });
    expect(await lifecycle.cancel(order.id, 'u-pg', NOW + 2)).toMatchObject({ kind: 'done', changed: false });
    expect(await lifecycle.pay(order.id, 'u-pg', 'late', NOW + 2)).toEqual({ kind: 'refused', code: 'ORDER_CANCELLED' });
    expect(await lifecycle.cancel(order.id, 'someone-else', NOW + 2)).toEqual({ kind: 'refused', code: 'ORDER_NOT_FOUND' });
  });
});

describe('pay and cancel on the order’s own shard', () => {
  it('when an order is paid, then its shard’s deadlines and outbox change and no other shard’s state does', async () => {
    const saleId = await liveSales('pay');
    const userId = userOnShard(2, 'payer');
    const order = await lua.place(saleId, userId, 2, 'hot');
    const keys = shardKeys(prefix, saleId, 'hot', 2);

    expect(await lifecycle.pay(order.id, userId, 'ref-1', NOW + 1)).toMatchObject({ kind: 'done', changed: true, order: { status: 'paid', paymentRef: 'ref-1' } });

    expect(await redis.zscore(keys.deadlines, order.id)).toBeNull();
    expect(await redis.xlen(keys.outbox)).toBe(2);
    expect(await redis.hget(keys.users, userId)).toBe('2');
    expect(await lua.available(saleId, 'hot')).toBe(38);
  });

  it('when an order is cancelled, then its units go back to the shard its record names, and no other shard of the item changes', async () => {
    const saleId = await liveSales('own-shard', 0);
    const userId = userOnShard(3, 'mover');
    const order = await lua.place(saleId, userId, 3, 'hot');
    const shards = Array.from({ length: K }, (_, k) => shardKeys(prefix, saleId, 'hot', k));
    const own = shards[3]!;
    expect(order.shard).toBe(3);
    expect(await redis.hget(own.item, 'available')).toBe('7');
    const others = async () => Promise.all(shards.filter((keys) => keys !== own).map(async (keys) => [await redis.hget(keys.item, 'available'), await redis.hgetall(keys.users)]));
    const othersBefore = await others();

    expect(await lifecycle.cancel(order.id, userId, NOW + 1)).toMatchObject({ kind: 'done', changed: true, order: { status: 'cancelled' } });

    expect(await redis.hmget(own.item, 'available')).toEqual(['10']);
    expect(await redis.hgetall(own.users)).toEqual({});
    expect(await others()).toEqual(othersBefore);
    expect(released.at(-1)).toEqual({ saleId, sku: 'hot', units: 3, orderIds: [order.id] });
  });

  it('when another user pays or cancels an order, then it is not found and nothing changes', async () => {
    const saleId = await liveSales('not-yours', 0);
    const order = await lua.place(saleId, 'owner', 1, 'cold');
    expect(await lifecycle.pay(order.id, 'thief', 'ref', NOW + 1)).toEqual({ kind: 'refused', code: 'ORDER_NOT_FOUND' });
    expect(await lifecycle.cancel(order.id, 'thief', NOW + 1)).toEqual({ kind: 'refused', code: 'ORDER_NOT_FOUND' });
    expect(await store.fromRedis(order.id)).toEqual(order);
  });
});

describe('no scan', () => {
  it('when several other sales are live, then a lookup, a payment and a cancel send commands only to the order’s own slot', async () => {
    const saleId = await liveSales('monitored', 6);
    const [payer, canceller] = [userOnShard(1, 'mon-pay'), userOnShard(3, 'mon-cancel')];
    const toPay = await lua.place(saleId, payer, 1, 'hot');
    const toCancel = await lua.place(saleId, canceller, 1, 'hot');
    const monitor = await monitorRedis(ctx.redisUrl, prefix);
    try {
      const slotOf = (id: string) => `${prefix}:{s${id.slice(-8)}}`;
      const act = async (what: () => Promise<unknown>, orderId: string) => {
        monitor.clear();
        await what();
        const marker = `${prefix}:marker:${orderId}`;
        await monitor.drain(marker);
        const lines = monitor.lines.filter((line) => !line.includes(marker));
        expect(lines.length).toBeGreaterThan(0);
        for (const line of lines) expect(line, line).toContain(slotOf(orderId));
        return lines;
      };

      const lookup = await act(() => store.find(toPay.id), toPay.id);
      // One read: the HGETALL of the order's own key.
      expect(lookup).toHaveLength(1);
      expect(lookup[0]).toContain('"hgetall"');
      await act(() => lifecycle.pay(toPay.id, payer, 'ref-mon', NOW + 1), toPay.id);
      await act(() => lifecycle.cancel(toCancel.id, canceller, NOW + 1), toCancel.id);
    } finally {
      await monitor.close();
    }
    expect(await store.find(toPay.id)).toMatchObject({ status: 'paid' });
    expect(await store.find(toCancel.id)).toMatchObject({ status: 'cancelled' });
  });
});

describe('the shopper’s list', () => {
  it('when a shopper has orders in several live sales, some only in Redis and one only in Postgres, then the list merges them newest first, filters by sale, and reads only the shopper’s index and orders', async () => {
    const [saleA, saleB] = [await liveSales('list-a', 3), await liveSales('list-b', 0)];
    const userId = 'lister';
    const inA = [
      await lua.place(saleA, userId, 1, 'hot', NOW - 3_000),
      await lua.place(saleA, userId, 1, 'cold', NOW - 2_000),
    ];
    const inB = await lua.place(saleB, userId, 1, 'hot', NOW - 1_000);
    // Someone else's order, named in this shopper's index by mistake: never listed.
    const foreign = await lua.place(saleA, 'other', 1, 'cold');
    await redis.zadd(userOrdersKey(prefix, userId), NOW, foreign.id);
    // An old order: persisted, gone from Redis and from the index.
    const oldSale = lua.newSaleId('list-old');
    const { startsAt, endsAt } = saleDefinition(oldSale, [], NOW - 86_400_000);
    expect(await new SaleRepository(pg).insert(await lua.loadSale(oldSale, [item({ sku: 'cold', stock: 5 })], { startsAt, endsAt }))).toBe(true);
    const oldOrder = await lua.place(oldSale, userId, 1, 'cold', NOW - 86_400_000);
    await new OrderWriter(pg).write(oldSale, [oldOrder]);
    await redis.del(orderKeyOf(prefix, oldOrder.id)!);
    await redis.zrem(userOrdersKey(prefix, userId), oldOrder.id);
    // Paid since its row was written: Redis's newer state wins the merge.
    await new SaleRepository(pg).insert(saleDefinition(saleA, [item({ sku: 'hot', stock: 40 }), item({ sku: 'cold', stock: 10 })], NOW));
    await new OrderWriter(pg).write(saleA, [inA[1]!]);
    expect(await lifecycle.pay(inA[1]!.id, userId, 'ref-list', NOW)).toMatchObject({ kind: 'done', changed: true });

    const monitor = await monitorRedis(ctx.redisUrl, prefix);
    let all: Awaited<ReturnType<OrderStore['listByUser']>>;
    try {
      all = await store.listByUser(userId);
      const marker = `${prefix}:marker:list`;
      await monitor.drain(marker);
      const lines = monitor.lines.filter((line) => !line.includes(marker));
      const allowed = [userOrdersKey(prefix, userId), ...[...inA, inB, foreign].map((order) => orderKeyOf(prefix, order.id)!)];
      expect(lines).toHaveLength(allowed.length);
      for (const line of lines) expect(allowed.some((key) => line.includes(`"${key}"`)), line).toBe(true);
    } finally {
      await monitor.close();
    }

    expect(all.map((order) => [order.id, order.status])).toEqual([
      [inB.id, 'pending_payment'],
      [inA[1]!.id, 'paid'],
      [inA[0]!.id, 'pending_payment'],
      [oldOrder.id, 'pending_payment'],
    ]);
    expect((await store.listByUser(userId, saleA)).map((order) => order.id)).toEqual([inA[1]!.id, inA[0]!.id]);
    expect((await store.listByUser(userId, oldSale)).map((order) => order.id)).toEqual([oldOrder.id]);
    expect(await store.listByUser('nobody')).toEqual([]);
  });
});
