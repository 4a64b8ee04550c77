// One poisoned outbox entry (a value Postgres refuses, forced past the HTTP checks) never holds
// back the rest of its batch: the good orders land, the bad one is set aside in
// order_dead_letters (encoded, so the NUL survives), counted and still readable from Redis.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/http/app.ts';
import type { Order } from '../../../src/orders/order.ts';
import { createPersistQueue, PERSIST_JOB } from '../../../src/orders/queue.ts';
import type { RunningService } from '../../../src/service.ts';
import { testApi, type Tokens } from '../../support/api.ts';
import type { TestContext } from '../../support/context.ts';

const api = testApi({ role: 'all', db: true });

let ctx: TestContext;
let service: RunningService;
let app: App;
let db: pg.Client;
let tk: Tokens;

beforeAll(async () => {
  ({ ctx, service, app, db, tk } = await api.open());
});

afterAll(() => api.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const deadLettersCounted = async () =>
  (await service.metrics.persistDeadLetters.get()).values.reduce((sum, value) => sum + value.value, 0);

function pendingOrder(saleId: string, sku: string, userId: string): Order {
  const now = Date.now();
  return {
    id: randomUUID(),
    saleId,
    sku,
    userId,
    quantity: 1,
    unitPrice: 100,
    amount: 100,
    status: 'pending_payment',
    idempotencyKey: null,
    createdAt: now,
    expiresAt: now + 900_000,
  };
}

describe('dead letters', () => {
  it('when one entry of a batch holds a NUL, then the other orders reach Postgres and the bad one is set aside', async () => {
    const { id: saleId } = await api.createSale([{ sku: 'a', stock: 20, unitPrice: 100 }]);
    // A real order, accepted through the API, whose payment confirmation arrives poisoned.
    const user = 'dl-user';
    const created = await app.inject({
      method: 'POST',
      url: `/v1/sales/${saleId}/orders`,
      headers: { authorization: tk.shopper(user) },
      payload: { sku: 'a', quantity: 1 },
    });
    expect(created.statusCode, created.body).toBe(201);
    const real = created.json<Order & { orderId: string }>();
    await until('the real order in Postgres', async () =>
      (await db.query('SELECT 1 FROM orders WHERE id = $1', [real.orderId])).rowCount === 1 ? true : undefined,
    );
    const paidAt = Date.now();
    const poisoned: Order = {
      ...pendingOrder(saleId, 'a', user),
      id: real.orderId,
      unitPrice: real.unitPrice,
      amount: real.amount,
      createdAt: Date.parse(real.createdAt as unknown as string),
      expiresAt: Date.parse(real.expiresAt as unknown as string),
      status: 'paid',
      paidAt,
      paymentRef: 'ref\u0000evil',
    };
    const others = Array.from({ length: 6 }, (_, i) => pendingOrder(saleId, 'a', `dl-other-${i}`));
    const entries = [...others.slice(0, 3), poisoned, ...others.slice(3)].map((order, index) => ({ streamId: `1-${index}`, order }));
    const countedBefore = await deadLettersCounted();

    const { queue, close } = createPersistQueue(ctx.config);
    try {
      const job = await queue.add(PERSIST_JOB, { saleId, entries }, { jobId: `poison-${saleId}` });
      await until('the batch to finish', async () => ((await job.isCompleted()) || (await job.isFailed()) ? true : undefined));
      expect(await job.isCompleted()).toBe(true);
    } finally {
      await close();
    }

    const { rows } = await db.query<{ id: string; status: string }>('SELECT id, status FROM orders WHERE sale_id = $1 ORDER BY id', [saleId]);
    expect(rows).toEqual(
      [...others.map((order) => ({ id: order.id, status: 'pending_payment' })), { id: real.orderId, status: 'pending_payment' }].sort((a, b) =>
        a.id < b.id ? -1 : 1,
      ),
    );
    const sold = await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId]);
    expect(sold.rows[0]?.sold).toBe(7);

    const letters = await db.query<{ order_id: string; sale_id: string; status: string; payload: string; error: string }>(
      'SELECT order_id, sale_id, status, payload, error FROM order_dead_letters WHERE sale_id = $1',
      [saleId],
    );
    expect(letters.rows).toHaveLength(1);
    const letter = letters.rows[0]!;
    expect(letter).toMatchObject({ order_id: real.orderId, status: 'paid' });
    // The payload is JSON with the NUL escaped: decoding it gives back the exact entry.
    expect(letter.payload).toContain('\\u0000');
    expect(JSON.parse(letter.payload)).toMatchObject({ id: real.orderId, paymentRef: 'ref\u0000evil', status: 'paid' });
    // Refused for the NUL: as text (22021) or, in the batch's JSON, as its escape (22P05).
    expect(letter.error).toMatch(/22021|0x00|UTF8|Unicode escape/);
    expect(await deadLettersCounted()).toBe(countedBefore + 1);

    // The order is still readable through the API (its live record stays in Redis).
    const read = await app.inject({ method: 'GET', url: `/v1/orders/${real.orderId}`, headers: { authorization: tk.shopper(user) } });
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json()).toMatchObject({ orderId: real.orderId });
    const report = await app.inject({ method: 'GET', url: `/v1/admin/sales/${saleId}/report`, headers: { authorization: tk.admin() } });
    expect(report.json()).toMatchObject({ ordersDeadLettered: 1, persistFailedBatches: 0 });
  });

  it('when the same poisoned batch is delivered twice, then one dead letter is kept and nothing else changes', async () => {
    const { id: saleId } = await api.createSale([{ sku: 'b', stock: 5, unitPrice: 100 }]);
    const bad: Order = { ...pendingOrder(saleId, 'b', 'user\u0000nul') };
    const good = pendingOrder(saleId, 'b', 'fine');
    const entries = [bad, good].map((order, index) => ({ streamId: `1-${index}`, order }));
    const { queue, close } = createPersistQueue(ctx.config);
    try {
      for (const attempt of [1, 2]) {
        const job = await queue.add(PERSIST_JOB, { saleId, entries }, { jobId: `poison-${saleId}-${attempt}` });
        await until('the batch to finish', async () => ((await job.isCompleted()) || (await job.isFailed()) ? true : undefined));
        expect(await job.isCompleted()).toBe(true);
      }
    } finally {
      await close();
    }
    const orders = await db.query<{ id: string }>('SELECT id FROM orders WHERE sale_id = $1', [saleId]);
    expect(orders.rows).toEqual([{ id: good.id }]);
    const letters = await db.query<{ order_id: string; status: string }>('SELECT order_id, status FROM order_dead_letters WHERE sale_id = $1', [saleId]);
    expect(letters.rows).toEqual([{ order_id: bad.id, status: 'pending_payment' }]);
    const sold = await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId]);
    expect(sold.rows[0]?.sold).toBe(1);
  });
});
