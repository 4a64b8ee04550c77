// The outbox persister's claim on a batch in flight: a live persister whose write is held up in
// Postgres for longer than the claim idle time keeps its entries (it renews the claim), so another
// persister does not take them over; the same entries left by a persister that stopped renewing
// are taken over. Two persisters in process, with their own consumer names and a short idle time.
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Pool } from '../../../src/db/pool.ts';
import { OUTBOX_GROUP, OutboxPersister } from '../../../src/orders/outbox-persister.ts';
import { soleShardKeys } from '../../support/sale-state.ts';
import type { App } from '../../../src/http/app.ts';
import type { Tokens } from '../../support/api.ts';
import { persisterFixture, type PersisterFixture } from '../../support/persister.ts';
import type { TestContext } from '../../support/context.ts';

// The API alone: no persister of the service's own reads the outbox.
const CLAIM_IDLE_MS = 600;
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

function persister(saleId: string, consumer: string): OutboxPersister {
  return persisters.persister([saleId], { consumer });
}

async function pendingConsumers(saleId: string): Promise<string[]> {
  const pending = (await redis.xpending((await soleShardKeys(redis, ctx.prefix, saleId)).outbox, OUTBOX_GROUP, '-', '+', 1_000)) as [string, string][];
  return [...new Set(pending.map(([, consumer]) => consumer))];
}

async function ordersInPostgres(saleId: string): Promise<number> {
  return Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE sale_id = $1', [saleId])).rows[0]?.n);
}

it('when a live persister’s write is held up longer than the claim idle time, then no other persister takes its batch over', async () => {
  const { id: saleId } = await api.createSale([{ sku: 'a', stock: 100 }]);
  for (let i = 0; i < 5; i++) {
    const response = await app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(`c${i}`) }, payload: { sku: 'a', quantity: 1 } });
    expect(response.statusCode).toBe(201);
  }
  // Postgres holds the sale's item row: the batch's upsert waits behind it.
  const holder = await pool.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT sold FROM sale_items WHERE sale_id = $1 FOR UPDATE', [saleId]);
  const slow = persister(saleId, 'slow');
  const other = persister(saleId, 'other');
  const held = slow.runOnce();
  try {
    await sleep(CLAIM_IDLE_MS * 3);
    // The other persister's round claims what has been idle for CLAIM_IDLE_MS: nothing, the claim
    // is renewed. (Had it claimed the batch, its own write would now wait behind the lock too.)
    const otherRound = other.runOnce();
    expect(await Promise.race([otherRound, sleep(CLAIM_IDLE_MS).then(() => 'held up in Postgres')])).toEqual({ persisted: 0, full: false });
    expect(await pendingConsumers(saleId)).toEqual(['slow']);
  } finally {
    await holder.query('ROLLBACK');
    holder.release();
  }
  expect((await held).persisted).toBe(5);
  expect(await ordersInPostgres(saleId)).toBe(5);
  expect(await redis.xlen((await soleShardKeys(redis, ctx.prefix, saleId)).outbox)).toBe(0);
});

it('when a persister stops renewing (it died), then another takes its entries over once idle and writes them', async () => {
  const { id: saleId } = await api.createSale([{ sku: 'a', stock: 100 }]);
  for (let i = 0; i < 3; i++) {
    const response = await app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(`d${i}`) }, payload: { sku: 'a', quantity: 1 } });
    expect(response.statusCode).toBe(201);
  }
  // The dead one: read the entries through the group and nothing more.
  const stream = (await soleShardKeys(redis, ctx.prefix, saleId)).outbox;
  await redis.xgroup('CREATE', stream, OUTBOX_GROUP, '0', 'MKSTREAM');
  await redis.xreadgroup('GROUP', OUTBOX_GROUP, 'dead', 'COUNT', 100, 'STREAMS', stream, '>');
  expect(await pendingConsumers(saleId)).toEqual(['dead']);

  const other = persister(saleId, 'other');
  await sleep(CLAIM_IDLE_MS + 100);
  expect((await other.runOnce()).persisted).toBe(3);
  expect(await ordersInPostgres(saleId)).toBe(3);
  expect(await redis.xlen(stream)).toBe(0);
});
