// Several sweepers on one sale, as several worker processes run them: the script expires each
// order once whoever calls it, and the per-shard lease keeps the others from reading the same
// batches — until its holder stops, when another takes the shard over at its next round. On key
// layout 2 a sweeper works every shard of every live sale, and idle shards cost little: a timer
// round looks at a shard again only at its next deadline or after a recheck interval.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { ExpirySweeper } from '../../../src/orders/expiry-sweeper.ts';
import type { LifecycleEvents } from '../../../src/orders/lifecycle.ts';
import { shardRefsOf, type SaleDefinition } from '../../../src/sales/sale.ts';
import type { ShardRef } from '../../../src/stock/keys.ts';
import type { TestContext } from '../../support/context.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const SWEEPERS = 4;
const ORDERS = 400;

const lua = luaFixture({ now: NOW, salePrefix: 'sweepers', connections: SWEEPERS, postgres: true });
const { pool, newSaleId } = lua;
const { loadSale, available, liveQuantities } = lua;

let ctx: TestContext;
let prefix: string;
let redis: Redis;

beforeAll(async () => {
  ({ ctx, prefix, redis } = await lua.open());
});

afterAll(() => lua.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Places `count` one-unit orders, due `windowMs` from now on the real clock. */
async function placeDue(saleId: string, count: number, from: number): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, async (_, i) => (await lua.place(saleId, `u-${from + i}`, 1, 'phone-x', Date.now())).id));
}

const shardsOf = (sale: SaleDefinition) => async (): Promise<ShardRef[]> => shardRefsOf(sale);

it('when 4 sweepers run on one sale, then one holds its shard and expires every order once; when it stops, it hands the shard back and another expires the next orders', async () => {
  const saleId = newSaleId('lease');
  // A 1-second payment window on the real clock: the sweepers' timers expire what falls due.
  const sale = await loadSale(saleId, [item({ stock: 2 * ORDERS, perUserLimit: 1 })], { startsAt: Date.now() - 60_000, paymentWindowSeconds: 1 });
  const keys = lua.shardKeys(saleId);
  const expiredBy: Map<string, number>[] = [];
  const sweepers = pool.map((client) => {
    const mine = new Map<string, number>();
    expiredBy.push(mine);
    const events: LifecycleEvents = {
      onReleased: ({ orderIds }) => orderIds.forEach((id) => mine.set(id, (mine.get(id) ?? 0) + 1)),
      onPaid: () => undefined,
      onReopened: async () => undefined,
    };
    const lifecycle = lua.lifecycleOn(client, events);
    return new ExpirySweeper(client, lifecycle, prefix, shardsOf(sale), createLogger(ctx.config), { intervalMs: 50, batchSize: 50, leaseMs: 400 });
  });
  try {
    for (const sweeper of sweepers) sweeper.start();
    const first = await placeDue(saleId, ORDERS, 0);
    const drained = async () => {
      const until = Date.now() + 10_000;
      while (Date.now() < until && (await redis.zcard(keys.deadlines)) > 0) await sleep(50);
    };
    await sleep(1_000);
    await drained();

    // Every order expired once, all by the lease holder.
    const counts = expiredBy.map((mine) => mine.size);
    const holder = counts.findIndex((n) => n > 0);
    expect(counts.filter((n) => n > 0)).toEqual([ORDERS]);
    for (const id of first) expect(expiredBy[holder]!.get(id)).toBe(1);

    // The holder stops holding the shard: it hands its lease back at once (a sweeper takes a
    // shard's lease only while the shard has orders due, so the key may already be gone), and
    // the next orders are expired by the others, each once.
    const held = await redis.get(keys.sweepLease);
    await sweepers[holder]!.stop();
    if (held !== null) expect(await redis.get(keys.sweepLease)).not.toBe(held);
    const second = await placeDue(saleId, ORDERS, ORDERS);
    await sleep(1_000);
    await drained();
    const successors = expiredBy.map((mine, lane) => (lane === holder ? 0 : second.filter((id) => mine.has(id)).length));
    expect(successors.filter((n) => n > 0)).toEqual([ORDERS]);
    expect(second.every((id) => expiredBy.reduce((total, mine) => total + (mine.get(id) ?? 0), 0) === 1)).toBe(true);

    expect(await available(saleId)).toBe(2 * ORDERS);
    expect(await liveQuantities(saleId)).toEqual({});
  } finally {
    await Promise.all(sweepers.map((sweeper) => sweeper.stop()));
  }
});

it('when a due deadline names an order whose record is gone, then the sweeper drops it and still expires the rest of the batch', async () => {
  const saleId = newSaleId('gone');
  const sale = await loadSale(saleId, [item({ stock: 10, perUserLimit: 1 })]);
  const keys = lua.shardKeys(saleId);
  const orders = [await lua.place(saleId, 'u-1'), await lua.place(saleId, 'u-2')];
  await redis.zadd(keys.deadlines, orders[0]!.expiresAt, 'lost-order');
  const expired: string[] = [];
  const events: LifecycleEvents = { onReleased: ({ orderIds }) => void expired.push(...orderIds), onPaid: () => undefined, onReopened: async () => undefined };
  const sweeper = new ExpirySweeper(redis, lua.lifecycleOn(redis, events), prefix, shardsOf(sale), createLogger(ctx.config), { batchSize: 2 });

  expect(await sweeper.runOnce(orders[1]!.expiresAt)).toBe(2);

  expect(expired.sort()).toEqual(orders.map((order) => order.id).sort());
  expect(await redis.zcard(keys.deadlines)).toBe(0);
  expect(await available(saleId)).toBe(10);
});

it('when a sale’s hot item has 4 shards, then one round expires the due orders of every shard, each shard’s units back to it', async () => {
  const saleId = newSaleId('shards');
  const sale = await loadSale(saleId, [item({ sku: 'hot', stock: 40, perUserLimit: 2, stockShards: 4 }), item({ sku: 'cold', stock: 5 })]);
  const orders = [];
  for (let i = 0; i < 24; i++) orders.push(await lua.place(saleId, `u-${i}`, 1, 'hot'));
  orders.push(await lua.place(saleId, 'u-cold', 2, 'cold'));
  expect(new Set(orders.map((order) => `${order.sku}/${order.shard}`)).size).toBe(5);
  const expired: string[] = [];
  const events: LifecycleEvents = { onReleased: ({ orderIds }) => void expired.push(...orderIds), onPaid: () => undefined, onReopened: async () => undefined };
  const sweeper = new ExpirySweeper(redis, lua.lifecycleOn(redis, events), prefix, shardsOf(sale), createLogger(ctx.config));

  expect(await sweeper.runOnce(orders[0]!.expiresAt)).toBe(25);

  expect(expired.sort()).toEqual(orders.map((order) => order.id).sort());
  for (let k = 0; k < 4; k++) expect(await redis.hget(lua.shardKeys(saleId, 'hot', k).item, 'available')).toBe('10');
  expect(await available(saleId, 'cold')).toBe(5);
  expect(await liveQuantities(saleId, 'hot')).toEqual({});
});

it('when 200 shards are live and only one has an order falling due, then timer rounds look at idle shards once per recheck, and the due order still expires within a round or two', async () => {
  const sales: SaleDefinition[] = [];
  for (let i = 0; i < 50; i++) {
    sales.push(await loadSale(newSaleId('idle'), [item({ stock: 8, stockShards: 4 })], { startsAt: Date.now() - 60_000, paymentWindowSeconds: 1 }));
  }
  const shards = sales.flatMap((sale) => shardRefsOf(sale));
  expect(shards).toHaveLength(200);
  const expired: string[] = [];
  const events: LifecycleEvents = { onReleased: ({ orderIds }) => void expired.push(...orderIds), onPaid: () => undefined, onReopened: async () => undefined };
  const sweeper = new ExpirySweeper(redis, lua.lifecycleOn(redis, events), prefix, async () => shards, createLogger(ctx.config), {
    intervalMs: 50,
    recheckMs: 1_000,
  });
  sweeper.start();
  try {
    await sleep(300);
    const order = await lua.place(sales[7]!.id, 'late-payer', 1, 'phone-x', Date.now());
    const startedAt = Date.now();
    await sleep(1_400);
    const ranMs = Date.now() - startedAt + 300;

    expect(expired).toEqual([order.id]);
    expect(await redis.hget(lua.keys(sales[7]!.id).order(order.id), 'status')).toBe('expired');
    // ~1.7 s of 50 ms rounds is ~30 rounds; looking at every shard each round would be ~6,000 looks.
    const rounds = ranMs / 50;
    expect(sweeper.stats.looks).toBeLessThan(200 * (ranMs / 1_000 + 2) + 20);
    expect(sweeper.stats.looks).toBeLessThan((200 * rounds) / 5);
    expect(sweeper.stats.sweeps).toBeLessThanOrEqual(2);
  } finally {
    await sweeper.stop();
  }
});

it('when 4 sweepers run on a 4-shard item at once, then every order of every shard expires exactly once and each shard gets back what it sold', async () => {
  const saleId = newSaleId('shard-leases');
  const sale = await loadSale(saleId, [item({ sku: 'hot', stock: 400, perUserLimit: 1, stockShards: 4 })], { startsAt: Date.now() - 60_000, paymentWindowSeconds: 1 });
  const counts = new Map<string, number>();
  const events: LifecycleEvents = {
    onReleased: ({ orderIds }) => orderIds.forEach((id) => counts.set(id, (counts.get(id) ?? 0) + 1)),
    onPaid: () => undefined,
    onReopened: async () => undefined,
  };
  const sweepers = pool.map(
    (client) => new ExpirySweeper(client, lua.lifecycleOn(client, events), prefix, shardsOf(sale), createLogger(ctx.config), { intervalMs: 20, batchSize: 20, leaseMs: 400 }),
  );
  try {
    for (const sweeper of sweepers) sweeper.start();
    const ids = await Promise.all(Array.from({ length: 200 }, async (_, i) => (await lua.place(saleId, `sh-${i}`, 1, 'hot', Date.now())).id));
    const until = Date.now() + 10_000;
    while (Date.now() < until && counts.size < 200) await sleep(50);
    await sleep(200);

    expect(counts.size).toBe(200);
    expect(ids.every((id) => counts.get(id) === 1)).toBe(true);
    for (let k = 0; k < 4; k++) expect(await redis.hget(lua.shardKeys(saleId, 'hot', k).item, 'available')).toBe('100');
    expect(await liveQuantities(saleId, 'hot')).toEqual({});
  } finally {
    await Promise.all(sweepers.map((sweeper) => sweeper.stop()));
  }
});
