// The order pipeline end to end (outbox → persister → Postgres, refused batches → BullMQ) in one process: a burst's
// 201s become exactly the rows in Postgres, redelivery changes nothing, and what the Postgres guard
// refuses lands as rejected_oversell rows (counted) beside the rest of the batch.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createPersistQueue } from '../../../src/orders/queue.ts';
import { PERSIST_JOB } from '../../../src/orders/queue.ts';
import { SaleCatalog } from '../../../src/sales/catalog.ts';
import type { RunningService } from '../../../src/service.ts';
import { defineScripts } from '../../../src/stock/scripts/registry.ts';
import { Redis } from 'ioredis';
import { testApi, tokens, type SaleItemInput } from '../../support/api.ts';
import type { TestContext } from '../../support/context.ts';

const api = testApi({ role: 'all', db: true });

let ctx: TestContext;
let service: RunningService;
let db: pg.Client;
let baseUrl: string;
const auth = () => tokens(ctx.config.jwtSecret);

beforeAll(async () => {
  ({ ctx, service, db, baseUrl } = await api.open());
});

afterAll(() => api.close());

async function createSale(items: SaleItemInput[]): Promise<string> {
  return (await api.createSale(items)).id;
}

async function waitForRows(saleId: string, count: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE sale_id = $1', [saleId]);
    if (Number(rows[0]?.n) >= count) return;
    if (Date.now() > deadline) throw new Error(`only ${rows[0]?.n} of ${count} orders reached Postgres`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface Accepted {
  orderId: string;
  userId: string;
  sku: string;
  quantity: number;
  amount: number;
}

/** Fires `attempts` orders over real HTTP with `concurrency` in flight; returns the 201 bodies. */
async function burst(
  saleId: string,
  sku: string,
  attempts: number,
  concurrency: number,
  quantityOf: (attempt: number) => number = (attempt) => 1 + (attempt % 2),
): Promise<{ accepted: Accepted[]; statuses: Map<number, number> }> {
  const accepted: Accepted[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < attempts) {
      const i = next++;
      const userId = `burst-${i}`;
      const response = await fetch(`${baseUrl}/v1/sales/${saleId}/orders`, {
        method: 'POST',
        headers: { authorization: auth().shopper(userId), 'content-type': 'application/json' },
        body: JSON.stringify({ sku, quantity: quantityOf(i) }),
      });
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      if (response.status === 201) accepted.push((await response.json()) as Accepted);
      else await response.body?.cancel();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { accepted, statuses };
}

describe('order pipeline', () => {
  it('when thousands of orders are accepted concurrently, then Postgres holds exactly those orders', async () => {
    const saleId = await createSale([{ sku: 'hot', stock: 2500, perUserLimit: 2, unitPrice: 1999 }]);
    const { accepted, statuses } = await burst(saleId, 'hot', 3000, 64);
    expect([...statuses.keys()].every((status) => status === 201 || status === 409)).toBe(true);
    const units = accepted.reduce((sum, order) => sum + order.quantity, 0);
    expect(units).toBeLessThanOrEqual(2500);
    expect(units).toBeGreaterThan(2500 - 2);

    await waitForRows(saleId, accepted.length);
    const { rows } = await db.query<{ id: string; user_id: string; sku: string; quantity: number; amount: string; status: string }>(
      'SELECT id, user_id, sku, quantity, amount, status FROM orders WHERE sale_id = $1',
      [saleId],
    );
    expect(rows.map((row) => row.id).sort()).toEqual(accepted.map((order) => order.orderId).sort());
    const byId = new Map(accepted.map((order) => [order.orderId, order]));
    for (const row of rows) {
      const order = byId.get(row.id)!;
      expect({ user: row.user_id, sku: row.sku, quantity: row.quantity, amount: Number(row.amount), status: row.status }).toEqual({
        user: order.userId,
        sku: order.sku,
        quantity: order.quantity,
        amount: order.amount,
        status: 'pending_payment',
      });
    }
    const sold = await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId]);
    expect(sold.rows[0]?.sold).toBe(units);

    const report = await service.app!.inject({ method: 'GET', url: `/v1/admin/sales/${saleId}/report`, headers: { authorization: auth().admin() } });
    expect(report.json()).toMatchObject({ ordersAccepted: accepted.length, ordersPersisted: accepted.length, persistLagSeconds: 0 });
    // The outbox is emptied once relayed: Redis memory does not grow with the orders.
    const redis = new Redis(ctx.redisUrl);
    expect(await redis.xlen(`${ctx.prefix}:{${saleId}}:outbox`)).toBe(0);
    redis.disconnect();
    console.log(`burst: 3000 attempts, ${accepted.length} accepted (${units} units), ${statuses.get(409) ?? 0} refused`);
  });

  it('when a batch is delivered again, then Postgres and the sold guard do not change', async () => {
    const saleId = await createSale([{ sku: 'x', stock: 10 }]);
    const { accepted } = await burst(saleId, 'x', 4, 4);
    await waitForRows(saleId, accepted.length);
    const before = await db.query('SELECT id, status, persisted_at FROM orders WHERE sale_id = $1 ORDER BY id', [saleId]);
    const soldBefore = await db.query('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId]);

    const { rows } = await db.query<{ id: string; user_id: string; sku: string; quantity: number; unit_price: string; amount: string; created_at: Date; expires_at: Date }>(
      'SELECT * FROM orders WHERE sale_id = $1',
      [saleId],
    );
    const entries = rows.map((row, index) => ({
      streamId: `1-${index}`,
      order: {
        id: row.id, saleId, sku: row.sku, userId: row.user_id, quantity: row.quantity, unitPrice: Number(row.unit_price),
        amount: Number(row.amount), status: 'pending_payment' as const, idempotencyKey: null,
        createdAt: row.created_at.getTime(), expiresAt: row.expires_at.getTime(),
      },
    }));
    const { queue, close } = createPersistQueue(ctx.config);
    const job = await queue.add(PERSIST_JOB, { saleId, entries }, { jobId: `redelivery-${saleId}` });
    for (let i = 0; i < 100 && !(await job.isCompleted()); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await job.isCompleted()).toBe(true);
    await close();

    expect((await db.query('SELECT id, status, persisted_at FROM orders WHERE sale_id = $1 ORDER BY id', [saleId])).rows).toEqual(before.rows);
    expect((await db.query('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId])).rows).toEqual(soldBefore.rows);
  });

  it('when Redis sells more than Postgres knows of, then the guard\'s refusals become rejected_oversell rows, counted, and no batch fails', async () => {
    const saleId = await createSale([{ sku: 'g', stock: 3, perUserLimit: 1 }]);
    // A Redis that "lost" its record of Postgres's stock: restocked there only.
    const redis = new Redis(ctx.redisUrl);
    await new SaleCatalog(defineScripts(redis, ctx.prefix)).restock(saleId, 'g', 2);
    redis.disconnect();
    const rejectedBefore = (await service.metrics.ordersRejectedOversell.get()).values[0]?.value ?? 0;

    // All five orders in the outbox before the persister reads any, so they make one batch.
    await service.persister!.stop();
    let accepted: Accepted[];
    try {
      ({ accepted } = await burst(saleId, 'g', 5, 1, () => 1));
    } finally {
      service.persister!.start();
    }
    expect(accepted).toHaveLength(5);
    await waitForRows(saleId, 5);
    const persisted = await db.query<{ status: string; n: string }>('SELECT status, count(*) AS n FROM orders WHERE sale_id = $1 GROUP BY status ORDER BY status', [saleId]);
    expect(persisted.rows).toEqual([{ status: 'pending_payment', n: '3' }, { status: 'rejected_oversell', n: '2' }]);
    expect((await db.query('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId])).rows).toEqual([{ sold: 3 }]);
    expect((await service.metrics.ordersRejectedOversell.get()).values[0]?.value).toBe(rejectedBefore + 2);
    const report = await service.app!.inject({ method: 'GET', url: `/v1/admin/sales/${saleId}/report`, headers: { authorization: auth().admin() } });
    expect(report.json()).toMatchObject({ persistFailedBatches: 0, ordersDeadLettered: 0, ordersRejectedOversell: 2 });
  });
});
