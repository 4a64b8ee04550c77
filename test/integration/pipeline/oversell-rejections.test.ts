// Guard refusals as visible records (issue 12): when Redis has accepted more than Postgres's
// oversell guard allows (possible only after Redis lost writes — staged here by lowering the
// item's stock in Postgres), each refused order becomes a `rejected_oversell` row, not counted
// in `sold`, listed by the report for compensation, shown by GET /v1/orders/:id and counted by
// flashsale_orders_rejected_oversell_total; its Redis record stops acting live. Every 201 stays
// exactly one row (tools/exactly-once.ts), also when several writers race over the same orders.
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { Redis } from 'ioredis';
import { uuidv7 } from 'uuidv7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../../src/db/pool.ts';
import type { App } from '../../../src/http/app.ts';
import { createMetrics } from '../../../src/metrics.ts';
import type { Order } from '../../../src/orders/order.ts';
import { OrderWriter } from '../../../src/orders/order-writer.ts';
import { rejectionKeys } from '../../../src/orders/oversell-rejections.ts';
import { compareWithRows, type OrderFacts } from '../../../tools/exactly-once.ts';
import type { Tokens } from '../../support/api.ts';
import type { TestContext } from '../../support/context.ts';
import { persisterFixture, type PersisterFixture } from '../../support/persister.ts';

const fixture = persisterFixture(5_000);
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


interface Accepted {
  orderId: string;
  userId: string;
  sku: string;
  quantity: number;
  amount: number;
  createdAt: string;
  expiresAt: string;
}

/** Redis believes `redisStock` units exist; Postgres's record says `recordStock`. */
async function oversoldSale(sku: string, redisStock: number, recordStock: number): Promise<string> {
  const { id } = await api.createSale([{ sku, stock: redisStock, perUserLimit: 1, unitPrice: 700 }]);
  await db.query('UPDATE sale_items SET initial_stock = $3 WHERE sale_id = $1 AND sku = $2', [id, sku, recordStock]);
  return id;
}

async function rowsOf(saleId: string) {
  return (
    await db.query<OrderFacts & { status: string; rejected: boolean; paymentRef: string | null }>(
      `SELECT id::text, user_id AS "userId", sku, quantity, status, rejected_at IS NOT NULL AS rejected, payment_ref AS "paymentRef"
       FROM orders WHERE sale_id = $1 ORDER BY created_at, id`,
      [saleId],
    )
  ).rows;
}

async function sold(saleId: string): Promise<number> {
  return (await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId])).rows[0]!.sold;
}

describe('oversell rejections', () => {
  it('when Redis accepted more than the record holds, then the excess become rejected_oversell rows, listed, counted, shown, and off the live books', async () => {
    const saleId = await oversoldSale('g', 5, 3);
    const accepted: Accepted[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(`r${i}`) }, payload: { sku: 'g', quantity: 1 } });
      expect(response.statusCode).toBe(201);
      accepted.push(response.json<Accepted>());
      await sleep(3); // distinct creation times: the oldest buyers keep the stock
    }
    // The newest buyer paid before anything reached Postgres: the rejection keeps the payment to refund.
    const paid = await app.inject({ method: 'POST', url: `/v1/orders/${accepted[4]!.orderId}/payment`, headers: { authorization: tk.shopper('r4') }, payload: { paymentRef: 'psp-r4' } });
    expect(paid.statusCode).toBe(200);

    const metrics = createMetrics();
    const persister = persisters.persister([saleId], { metrics });
    expect((await persister.runOnce()).persisted).toBe(6);

    const rows = await rowsOf(saleId);
    expect(rows.map((row) => [row.id, row.status, row.rejected, row.paymentRef])).toEqual([
      [accepted[0]!.orderId, 'pending_payment', false, null],
      [accepted[1]!.orderId, 'pending_payment', false, null],
      [accepted[2]!.orderId, 'pending_payment', false, null],
      [accepted[3]!.orderId, 'rejected_oversell', true, null],
      [accepted[4]!.orderId, 'rejected_oversell', true, 'psp-r4'],
    ]);
    expect(await sold(saleId)).toBe(3);
    expect((await metrics.ordersRejectedOversell.get()).values[0]?.value).toBe(2);
    // Invariant 3: every 201 is exactly one row, the rejections counted apart.
    const facts = accepted.map((a) => ({ id: a.orderId, userId: a.userId, sku: a.sku, quantity: a.quantity }));
    expect(compareWithRows(facts, rows)).toEqual({ missing: [], duplicated: [], mismatched: [], extra: [], rejected: [accepted[3]!.orderId, accepted[4]!.orderId] });

    // Redis: the rejected records say so, hold no deadline and no live quantity; stock is not given back.
    for (const order of [accepted[3]!, accepted[4]!]) {
      const [orderKey, deadlines, users] = (await rejectionKeys(redis, ctx.prefix, { ...order, id: order.orderId, saleId }))!;
      expect(await redis.hget(orderKey, 'status')).toBe('rejected_oversell');
      expect(await redis.zscore(deadlines, order.orderId)).toBeNull();
      expect(await redis.hget(users, order.userId)).toBeNull();
    }
    expect(await api.available(saleId, 'g')).toBe(0);
    // The live ones are untouched.
    expect(await api.liveQuantity(saleId, 'g', 'r0')).toBe(1);

    // The shopper sees the truth.
    const shown = await app.inject({ method: 'GET', url: `/v1/orders/${accepted[3]!.orderId}`, headers: { authorization: tk.shopper('r3') } });
    expect(shown.statusCode).toBe(200);
    expect(shown.json()).toMatchObject({ orderId: accepted[3]!.orderId, status: 'rejected_oversell', rejectedAt: expect.any(String) });
    // It cannot be paid nor cancelled: it is void.
    for (const action of ['payment', 'cancel']) {
      const refused = await app.inject({ method: 'POST', url: `/v1/orders/${accepted[3]!.orderId}/${action}`, headers: { authorization: tk.shopper('r3') }, payload: action === 'payment' ? { paymentRef: 'late' } : undefined });
      expect([refused.statusCode, refused.json().code]).toEqual([409, 'ORDER_REJECTED']);
    }
    // Postgres is the truth even where the Redis record still says pending (its marking lost).
    const [orderKey] = (await rejectionKeys(redis, ctx.prefix, { ...accepted[3]!, id: accepted[3]!.orderId, saleId }))!;
    await redis.hset(orderKey, 'status', 'pending_payment');
    const truth = await app.inject({ method: 'GET', url: `/v1/orders/${accepted[3]!.orderId}`, headers: { authorization: tk.shopper('r3') } });
    expect(truth.json()).toMatchObject({ status: 'rejected_oversell' });
    const unpaid = await app.inject({ method: 'POST', url: `/v1/orders/${accepted[3]!.orderId}/payment`, headers: { authorization: tk.shopper('r3') }, payload: { paymentRef: 'late' } });
    expect([unpaid.statusCode, unpaid.json().code]).toEqual([409, 'ORDER_REJECTED']);

    // The operator's report lists whom to compensate.
    const report = await app.inject({ method: 'GET', url: `/v1/admin/sales/${saleId}/report`, headers: { authorization: tk.admin() } });
    expect(report.statusCode).toBe(200);
    const body = report.json<{ ordersRejectedOversell: number; rejectedOversell: unknown[]; items: { paid: number; reserved: number }[] }>();
    expect(body.ordersRejectedOversell).toBe(2);
    expect(body.rejectedOversell).toEqual([
      { orderId: accepted[3]!.orderId, userId: 'r3', sku: 'g', quantity: 1, amount: 700, createdAt: expect.any(String), rejectedAt: expect.any(String), paymentRef: null },
      { orderId: accepted[4]!.orderId, userId: 'r4', sku: 'g', quantity: 1, amount: 700, createdAt: expect.any(String), rejectedAt: expect.any(String), paymentRef: 'psp-r4' },
    ]);
    expect(body.items[0]!.paid).toBe(0);

    // Delivered again (a redelivery, a second persister): nothing moves, nothing is counted twice.
    const states = accepted.map((a): Order => ({
      ...order(saleId, a.orderId, a.userId, 0),
      createdAt: Date.parse(a.createdAt),
      expiresAt: Date.parse(a.expiresAt),
    }));
    const again = await new OrderWriter(pool).write(saleId, [...states.slice(0, 4), { ...states[4]!, status: 'paid', paidAt: Date.now(), paymentRef: 'psp-r4' }]);
    expect(again).toEqual({ inserted: [], finalised: [], rejected: [] });
    expect(await rowsOf(saleId)).toEqual(rows);
    expect(await sold(saleId)).toBe(3);
  });

  it('when the oversold item has 4 stock shards, then each rejected order is taken off its own shard\'s books', async () => {
    const { id: saleId } = await api.createSale([{ sku: 'k', stock: 12, perUserLimit: 1, unitPrice: 700, stockShards: 4 }]);
    await db.query('UPDATE sale_items SET initial_stock = 3 WHERE sale_id = $1', [saleId]);
    const accepted: Accepted[] = [];
    for (let i = 0; i < 8; i++) {
      const response = await app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(`k${i}`) }, payload: { sku: 'k', quantity: 1 } });
      expect(response.statusCode).toBe(201);
      accepted.push(response.json<Accepted>());
    }
    const metrics = createMetrics();
    await persisters.persister([saleId], { metrics }).runOnce();
    const rows = await rowsOf(saleId);
    const rejected = rows.filter((row) => row.status === 'rejected_oversell');
    expect(rows).toHaveLength(8);
    expect(rejected).toHaveLength(5);
    expect(await sold(saleId)).toBe(3);
    expect((await metrics.ordersRejectedOversell.get()).values[0]?.value).toBe(5);
    const shards = new Set<string>();
    for (const row of rejected) {
      const [orderKey, deadlines, users] = (await rejectionKeys(redis, ctx.prefix, { ...row, saleId }))!;
      shards.add(deadlines);
      expect(await redis.hget(orderKey, 'status')).toBe('rejected_oversell');
      expect(await redis.zscore(deadlines, row.id)).toBeNull();
      expect(await redis.hget(users, row.userId)).toBeNull();
    }
    // The shoppers' home shards differ: the marking found each order's own.
    expect(shards.size).toBeGreaterThan(1);
  });

  it('when three writers race over the same orders beyond the stock, then each order is one row, the stock is sold exactly, and each rejection is counted once', async () => {
    const saleId = await oversoldSale('h', 40, 8);
    const t0 = Date.now();
    const orders = Array.from({ length: 20 }, (_, i) => order(saleId, uuidv7(), `w${i}`, i, 'h', t0));
    const shuffled = (seed: number) => [...orders].sort((a, b) => ((a.createdAt * seed) % 7) - ((b.createdAt * seed) % 7));
    const writers = [new OrderWriter(pool), new OrderWriter(pool), new OrderWriter(pool)];
    const results = await Promise.all([
      writers[0]!.write(saleId, orders),
      writers[1]!.write(saleId, shuffled(3)),
      // The third in small batches, as a persister reading a slow stream would.
      (async () => {
        const rejected = [];
        for (let i = 0; i < orders.length; i += 3) rejected.push(...(await writers[2]!.write(saleId, shuffled(5).slice(i, i + 3))).rejected);
        return { rejected };
      })(),
    ]);
    const rows = await rowsOf(saleId);
    const { missing, duplicated, mismatched, extra, rejected } = compareWithRows(
      orders.map((o) => ({ id: o.id, userId: o.userId, sku: o.sku, quantity: o.quantity })),
      rows,
    );
    expect({ missing, duplicated, mismatched, extra }).toEqual({ missing: [], duplicated: [], mismatched: [], extra: [] });
    expect(rows.filter((row) => row.status === 'pending_payment')).toHaveLength(8);
    expect(rejected).toHaveLength(12);
    expect(await sold(saleId)).toBe(8);
    const reported = results.flatMap((result) => result.rejected.map((r) => r.id));
    expect(reported.sort()).toEqual([...rejected].sort());
  });
});

function order(saleId: string, id: string, userId: string, i: number, sku = 'g', t0 = 0): Order {
  return {
    id,
    saleId,
    sku,
    userId,
    quantity: 1,
    unitPrice: 700,
    amount: 700,
    status: 'pending_payment',
    idempotencyKey: null,
    createdAt: t0 + i,
    expiresAt: t0 + i + 900_000,
  };
}
