// Expiry keeps up with a rush of accepts: 5,000 orders placed through the reserve binding over
// 2.5 s (2,000/s; a slower machine only spreads the deadlines wider), with a
// 1-second payment window and nobody paying, come back to stock within 2 s of each deadline while
// the rush still runs (the service's own sweeper, with its defaults), each exactly once, and
// Postgres ends with every order expired.
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { shardKeys } from '../../../src/stock/keys.ts';
import { expiryLag, type StockSample } from '../../../tools/expiry-lag.ts';
import { testApi } from '../../support/api.ts';

const ORDERS = 5_000;
const WINDOW_SECONDS = 1;
/** Orders in flight at once, as many shoppers' requests would be. */
const IN_FLIGHT = 64;
const SAMPLE_EVERY_MS = 20;
/** The rush lasts at least this long, so deadlines fall due while orders still arrive. */
const RUSH_MS = 2_500;

const api = testApi({ role: 'all', db: true });
let service: RunningService;
let redis: Redis;
let db: pg.Client;
let prefix: string;

beforeAll(async () => {
  const opened = await api.open();
  ({ service, redis, db } = opened);
  prefix = opened.ctx.prefix;
});

afterAll(() => api.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it('when 5,000 orders are placed in a rush and none is paid, then every unit is back within 2 s of its deadline, once, and Postgres says expired for each', async () => {
  const sale = await api.createSale([{ sku: 'hot', stock: ORDERS, perUserLimit: 1 }], { paymentWindowSeconds: WINDOW_SECONDS });
  // Key layout 2: the item has one stock shard.
  const keys = shardKeys(prefix, sale.id, 'hot', 0);
  const itemKey = keys.item;
  const accepted: { id: string; expiresAt: number }[] = [];
  let placing = true;

  // Sample the item's stock on a connection of its own while the rush and the sweeper run.
  const samples: StockSample[] = [];
  const sampling = (async () => {
    for (;;) {
      const placed = accepted.length;
      const at = Date.now();
      samples.push({ at, placed, available: Number(await redis.hget(itemKey, 'available')) });
      if (!placing && placed === ORDERS && samples.at(-1)?.available === ORDERS) return;
      if (at - (accepted.at(-1)?.expiresAt ?? at) > 10_000) return;
      await sleep(SAMPLE_EVERY_MS);
    }
  })();

  let next = 0;
  const rushStarted = Date.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < ORDERS) {
        const ahead = (next / ORDERS) * RUSH_MS - (Date.now() - rushStarted);
        if (ahead > 0) await sleep(ahead);
        if (next >= ORDERS) break;
        const userId = `storm-${next++}`;
        const result = await service.reservations.reserve({ saleId: sale.id, sku: 'hot', userId, quantity: 1 });
        if (result.kind !== 'accepted') throw new Error(`order of ${userId}: ${JSON.stringify(result)}`);
        accepted.push({ id: result.order.id, expiresAt: result.order.expiresAt });
      }
    }),
  );
  placing = false;
  const rushMs = Date.now() - rushStarted;
  await sampling;

  const lag = expiryLag(
    ORDERS,
    accepted.map((order) => order.expiresAt),
    samples,
  );
  console.log(`expiry storm: ${ORDERS} orders in ${rushMs} ms; worst unit ${lag.worstUnitLagMs} ms late, last unit ${lag.lastUnitLagMs} ms after the last deadline`);
  expect(lag.overReleased).toBe(false);
  expect(lag.allBackAt).toBeDefined();
  expect(lag.lastUnitLagMs).toBeLessThanOrEqual(2_000);
  expect(lag.worstUnitLagMs).toBeLessThanOrEqual(2_000);
  // Expiries ran alongside accepts: units came back before the last order was placed.
  expect(samples.some((sample) => sample.placed < ORDERS && sample.available > ORDERS - sample.placed)).toBe(true);

  // Exactly once: all stock back and no more, nobody holds any, nothing left to expire.
  expect(await redis.hget(itemKey, 'available')).toBe(String(ORDERS));
  expect(await redis.hlen(keys.users)).toBe(0);
  expect(await redis.zcard(keys.deadlines)).toBe(0);
  const released = (await service.metrics.unitsReleased.get()).values.filter((v) => v.labels.reason === 'expired').reduce((sum, v) => sum + v.value, 0);
  expect(released).toBe(ORDERS);

  // Postgres agrees: one row per accepted order, each expired, nothing sold.
  const counts = async () =>
    (
      await db.query<{ rows: string; expired: string; ids: string }>(
        `SELECT count(*) AS rows, count(*) FILTER (WHERE status = 'expired' AND expired_at IS NOT NULL) AS expired, count(DISTINCT id) AS ids
           FROM orders WHERE sale_id = $1`,
        [sale.id],
      )
    ).rows[0];
  const waitUntil = Date.now() + 30_000;
  let seen = await counts();
  while (Number(seen?.expired) < ORDERS && Date.now() < waitUntil) {
    await sleep(100);
    seen = await counts();
  }
  expect(seen).toEqual({ rows: String(ORDERS), expired: String(ORDERS), ids: String(ORDERS) });
  const ids = new Set((await db.query<{ id: string }>('SELECT id FROM orders WHERE sale_id = $1', [sale.id])).rows.map((row) => row.id));
  expect(accepted.every((order) => ids.has(order.id))).toBe(true);
  const sold = await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1', [sale.id]);
  expect(sold.rows).toEqual([{ sold: 0 }]);
}, 60_000);
