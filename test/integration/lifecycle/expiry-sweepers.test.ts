// Several sweepers on one sale, as several worker processes run them: the script expires each
// order once whoever calls it, and the per-sale lease keeps the others from reading the same
// batches — until its holder stops, when another takes the sale over at its next round.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { ExpirySweeper } from '../../../src/orders/expiry-sweeper.ts';
import type { LifecycleEvents } from '../../../src/orders/lifecycle.ts';
import { saleKeys } from '../../../src/stock/keys.ts';
import type { TestContext } from '../../support/context.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const SWEEPERS = 4;
const ORDERS = 400;

const lua = luaFixture({ now: NOW, salePrefix: 'sweepers', connections: SWEEPERS, postgres: true });
const { pool, newSaleId, loadSale, available, liveQuantities } = lua;

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
  const reservations = lua.fresh();
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const result = await reservations.reserve({ saleId, sku: 'phone-x', userId: `u-${from + i}`, quantity: 1 }, Date.now());
      if (result.kind !== 'accepted') throw new Error(JSON.stringify(result));
      return result.order.id;
    }),
  );
}

it('when 4 sweepers run on one sale, then one holds it and expires every order once; when it stops, it hands the sale to another at once', async () => {
  const saleId = newSaleId('lease');
  // A 1-second payment window on the real clock: the sweepers' timers expire what falls due.
  await loadSale(saleId, [item({ stock: 2 * ORDERS, perUserLimit: 1 })], { startsAt: Date.now() - 60_000, paymentWindowSeconds: 1 });
  const keys = saleKeys(prefix, saleId);
  const expiredBy: Map<string, number>[] = [];
  const sweepers = pool.map((client) => {
    const mine = new Map<string, number>();
    expiredBy.push(mine);
    const events: LifecycleEvents = {
      onReleased: ({ orderIds }) => orderIds.forEach((id) => mine.set(id, (mine.get(id) ?? 0) + 1)),
      onPaid: () => undefined,
      onReopened: async () => undefined,
    };
    const lifecycle = lua.lifecycleOn(client, events, async () => [saleId]);
    return new ExpirySweeper(client, lifecycle, prefix, async () => [saleId], createLogger(ctx.config), { intervalMs: 50, batchSize: 50, leaseMs: 400 });
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
    expect(await redis.get(keys.sweepLease)).not.toBeNull();

    // The holder stops: it hands its lease back, so another sweeper holds the sale within a round
    // or two (the lease, renewed every round, would otherwise keep it ~400 ms), and expires the
    // next orders.
    const held = await redis.get(keys.sweepLease);
    await sweepers[holder]!.stop();
    const stoppedAt = Date.now();
    let successor = await redis.get(keys.sweepLease);
    while ((successor === null || successor === held) && Date.now() - stoppedAt < 1_000) {
      await sleep(10);
      successor = await redis.get(keys.sweepLease);
    }
    expect(successor).not.toBeNull();
    expect(successor).not.toBe(held);
    expect(Date.now() - stoppedAt).toBeLessThan(250);
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
  await loadSale(saleId, [item({ stock: 10, perUserLimit: 1 })]);
  const keys = saleKeys(prefix, saleId);
  const orders = [await lua.place(saleId, 'u-1'), await lua.place(saleId, 'u-2')];
  await redis.zadd(keys.deadlines, orders[0]!.expiresAt, 'lost-order');
  const expired: string[] = [];
  const events: LifecycleEvents = { onReleased: ({ orderIds }) => void expired.push(...orderIds), onPaid: () => undefined, onReopened: async () => undefined };
  const sweeper = new ExpirySweeper(redis, lua.lifecycleOn(redis, events, async () => [saleId]), prefix, async () => [saleId], createLogger(ctx.config), { batchSize: 2 });

  expect(await sweeper.runOnce(orders[1]!.expiresAt)).toBe(2);

  expect(expired.sort()).toEqual(orders.map((order) => order.id).sort());
  expect(await redis.zcard(keys.deadlines)).toBe(0);
  expect(await available(saleId)).toBe(10);
});
