// The outbox persister (and the expiry sweeper) when one sale's keys or entries are bad: the other
// sales go on being served, the bad sale recovers once repaired, entries no order can be read from
// are set aside instead of pinning the stream, and a Redis
// EXPIRE failing after Postgres committed does not fail the batch. Real Redis and Postgres.
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Pool } from '../../../src/db/pool.ts';
import { createLogger } from '../../../src/logger.ts';
import { createMetrics, type Metrics } from '../../../src/metrics.ts';
import { BatchWriter } from '../../../src/orders/batch-writer.ts';
import { OrderWriter } from '../../../src/orders/order-writer.ts';
import { latestPerOrder, parseStreamEntries, type RawStreamEntries } from '../../../src/orders/outbox.ts';
import { OUTBOX_GROUP, OutboxPersister } from '../../../src/orders/outbox-persister.ts';
import { soleShardKeys } from '../../support/sale-state.ts';
import type { App } from '../../../src/http/app.ts';
import type { Tokens } from '../../support/api.ts';
import { persisterFixture, type PersisterFixture } from '../../support/persister.ts';
import type { TestContext } from '../../support/context.ts';

// The API alone: no persister of the service's own reads the outbox.
const CLAIM_IDLE_MS = 1_000;
const fixture = persisterFixture(CLAIM_IDLE_MS);
const { api } = fixture;

let ctx: TestContext;
let app: App;
let db: pg.Client;
let tk: Tokens;
let redis: Redis;
let pool: Pool;
let persisters: PersisterFixture;

beforeAll(async () => {
  persisters = await fixture.open();
  ({ ctx, app, db, tk, redis, pool } = persisters);
});

afterAll(() => fixture.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function persister(saleIds: string[], metrics: Metrics, options: { consumer?: string; batchSize?: number } = {}): OutboxPersister {
  return persisters.persister(saleIds, { metrics, ...options });
}

let users = 0;
async function order(saleId: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(`u${users++}`) }, payload: { sku: 'a', quantity: 1 } });
  expect(response.statusCode).toBe(201);
  return (response.json() as { orderId: string }).orderId;
}

async function ordersInPostgres(saleId: string): Promise<number> {
  return Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE sale_id = $1', [saleId])).rows[0]?.n);
}

async function counter(metric: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> }, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0);
}

it('when one sale’s outbox key is of the wrong type, then the sales after it are still persisted, and it is again once repaired', async () => {
  const [{ id: bad }, { id: good }] = [await api.createSale([{ sku: 'a', stock: 100 }]), await api.createSale([{ sku: 'a', stock: 100 }])];
  const metrics = createMetrics();
  const subject = persister([bad, good], metrics);
  await order(bad);
  await order(good);
  expect((await subject.runOnce()).persisted).toBe(2);

  // The bad sale's stream is replaced by a string of the same name: every stream command fails on it.
  const badStream = (await soleShardKeys(redis, ctx.prefix, bad)).outbox;
  await redis.del(badStream);
  await redis.set(badStream, 'not a stream');
  await order(good);
  await subject.runOnce();
  expect(await ordersInPostgres(good)).toBe(2);
  expect(await counter(metrics.outboxSaleFailures)).toBeGreaterThan(0);

  // Repaired: the key deleted, a new order makes the stream again, without the group (NOGROUP
  // until the persister creates the group again).
  await redis.del(badStream);
  await order(bad);
  for (let round = 0; round < 3 && (await ordersInPostgres(bad)) < 2; round++) await subject.runOnce();
  expect(await ordersInPostgres(bad)).toBe(2);
  expect(await redis.xlen(badStream)).toBe(0);
});

it('when more unparseable entries than a batch lie ahead of a dead consumer’s good entry, then the good one is persisted and the bad ones are set aside', async () => {
  const { id: saleId } = await api.createSale([{ sku: 'a', stock: 100 }]);
  const stream = (await soleShardKeys(redis, ctx.prefix, saleId)).outbox;
  const BAD = 25;
  for (let i = 0; i < BAD; i++) await redis.xadd(stream, '*', 'junk', `x\u0000${i}`);
  const orderId = await order(saleId);
  // The previous version's group, left on the stream.
  await redis.xgroup('CREATE', stream, 'relay', '0');
  // A dead persister read everything and never acknowledged it.
  await redis.xgroup('CREATE', stream, OUTBOX_GROUP, '0');
  await redis.xreadgroup('GROUP', OUTBOX_GROUP, 'dead', 'COUNT', 1_000, 'STREAMS', stream, '>');
  await sleep(CLAIM_IDLE_MS + 100);

  const metrics = createMetrics();
  const subject = persister([saleId], metrics, { consumer: 'live', batchSize: 2 });
  // Claim rounds in quick succession (well within the idle time), as a busy persister's would be.
  const start = Date.now();
  for (let round = 0; round < 20 && (await ordersInPostgres(saleId)) === 0; round++) await subject.runOnce(start + round * CLAIM_IDLE_MS);
  expect(Date.now() - start).toBeLessThan(CLAIM_IDLE_MS);

  expect((await db.query('SELECT id FROM orders WHERE sale_id = $1', [saleId])).rows).toEqual([{ id: orderId }]);
  const letters = await db.query<{ payload: string }>(`SELECT payload FROM order_dead_letters WHERE sale_id = $1 AND status = 'malformed'`, [saleId]);
  expect(letters.rows).toHaveLength(BAD);
  expect(letters.rows.every(({ payload }) => payload.includes('\\u0000'))).toBe(true);
  expect(await counter(metrics.persistFailures, { reason: 'malformed' })).toBe(BAD);
  expect(await redis.xlen(stream)).toBe(0);
  // The obsolete group is gone. (A dead process's consumer stays, with nothing pending: deleting
  // it after checking it is idle is two commands, and an entry it read in between would leave the
  // pending list unpersisted. A few hundred bytes a restart is the cheaper side.)
  const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  expect(groups.map((info) => info[1])).toEqual([OUTBOX_GROUP]);
});

it('when shortening a finished order’s Redis life fails after Postgres committed, then the batch is written and not failed', async () => {
  const { id: saleId } = await api.createSale([{ sku: 'a', stock: 100 }]);
  const orderId = await order(saleId);
  const cancelled = await app.inject({ method: 'POST', url: `/v1/orders/${orderId}/cancel`, headers: { authorization: tk.shopper(`u${users - 1}`) } });
  expect(cancelled.statusCode).toBe(200);
  const raw = (await redis.xrange((await soleShardKeys(redis, ctx.prefix, saleId)).outbox, '-', '+')) as RawStreamEntries;
  const orders = latestPerOrder(parseStreamEntries(saleId, raw).entries);
  expect(orders.map((o) => o.status)).toEqual(['cancelled']);

  // A Redis connection that refuses every command: the EXPIRE fails.
  const offline = new Redis(ctx.redisUrl, { lazyConnect: true, enableOfflineQueue: false });
  try {
    const metrics = createMetrics();
    const result = await new BatchWriter(new OrderWriter(pool), offline, ctx.prefix, metrics, createLogger(ctx.config)).write(saleId, orders);
    expect(result.finalised.map(({ id }) => id)).toEqual([orderId]);
  } finally {
    offline.disconnect();
  }
  expect((await db.query('SELECT status FROM orders WHERE id = $1', [orderId])).rows).toEqual([{ status: 'cancelled' }]);
});
