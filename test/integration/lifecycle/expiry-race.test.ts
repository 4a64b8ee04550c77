// Payments and cancels racing the batch expiry: shoppers pay or cancel around their deadline over
// HTTP while the service's sweeper expires what is due, in batches. Every order ends paid,
// cancelled or expired — as its shopper was told — each unpaid unit comes back once, and Postgres
// agrees with Redis: available = initial − live, sold = paid.
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { shardKeys } from '../../../src/stock/keys.ts';
import { testApi, type Tokens } from '../../support/api.ts';

const ORDERS = 600;
/** Shoppers act from this long before their deadline to this long after it. */
const SPREAD_MS = 300;

const api = testApi({ role: 'all', db: true });
let service: RunningService;
let redis: Redis;
let db: pg.Client;
let tk: Tokens;
let prefix: string;

beforeAll(async () => {
  const opened = await api.open();
  ({ service, redis, db, tk } = opened);
  prefix = opened.ctx.prefix;
});

afterAll(() => api.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let value = await read();
  while (!done(value) && Date.now() < until) {
    await sleep(100);
    value = await read();
  }
  return value;
}

it('when shoppers pay or cancel around their deadline while the sweeper expires in batches, then each order has one winner, each unpaid unit comes back once, and Postgres agrees', async () => {
  const sale = await api.createSale([{ sku: 'hot', stock: ORDERS, perUserLimit: 1 }], { paymentWindowSeconds: 1 });
  // Key layout 2: the item has one stock shard, where its orders and deadlines live.
  const keys = shardKeys(prefix, sale.id, 'hot', 0);
  const orders = await Promise.all(
    Array.from({ length: ORDERS }, async (_, i) => {
      const userId = `racer-${i}`;
      const result = await service.reservations.reserve({ saleId: sale.id, sku: 'hot', userId, quantity: 1 });
      if (result.kind !== 'accepted') throw new Error(`order ${i}: ${JSON.stringify(result)}`);
      return { userId, id: result.order.id, expiresAt: result.order.expiresAt };
    }),
  );

  // Order i: paid (i % 3 = 0), cancelled (1) or left to expire (2); shoppers act at a time spread
  // evenly around their deadline, so the sweeper's rounds fall among them.
  const answers = await Promise.all(
    orders.map(async (order, i) => {
      if (i % 3 === 2) return { action: 'none' as const, statusCode: 0, status: undefined };
      await sleep(Math.max(0, order.expiresAt + ((i * 7919) % (2 * SPREAD_MS)) - SPREAD_MS - Date.now()));
      const action = i % 3 === 0 ? ('pay' as const) : ('cancel' as const);
      const response = await service.app!.inject({
        method: 'POST',
        url: `/v1/orders/${order.id}/${action === 'pay' ? 'payment' : 'cancel'}`,
        headers: { authorization: tk.shopper(order.userId) },
        ...(action === 'pay' && { payload: { paymentRef: `ref-${i}` } }),
      });
      const body = response.json() as { status?: string; code?: string };
      return { action, statusCode: response.statusCode, status: body.status ?? body.code };
    }),
  );

  // Let the sweeper finish: nothing left to expire.
  expect(await eventually(() => redis.zcard(keys.deadlines), (n) => n === 0)).toBe(0);
  const statuses = await Promise.all(orders.map((order) => redis.hget(keys.order(order.id), 'status')));
  const count = { paid: 0, cancelled: 0, expired: 0, tooLate: 0 };
  answers.forEach((answer, i) => {
    const status = statuses[i];
    // What the shopper heard is what happened.
    if (answer.action === 'none') expect(status, `order ${i}`).toBe('expired');
    else if (answer.statusCode === 200) expect(status, `order ${i}`).toBe(answer.action === 'pay' ? 'paid' : 'cancelled');
    else {
      expect({ statusCode: answer.statusCode, code: answer.status }, `order ${i}`).toEqual({ statusCode: 409, code: 'ORDER_EXPIRED' });
      expect(status, `order ${i}`).toBe('expired');
      count.tooLate++;
    }
    if (status === 'paid' || status === 'cancelled' || status === 'expired') count[status]++;
  });
  expect(count.paid + count.cancelled + count.expired).toBe(ORDERS);
  // The race went both ways: some shoppers beat the deadline, some came too late (the sweeper, or
  // their own late call, had expired the order).
  expect(count.paid + count.cancelled).toBeGreaterThan(0);
  expect(count.tooLate).toBeGreaterThan(0);

  // Each unpaid unit back once: available = initial − live (the paid ones), held by their buyers only.
  expect(Number(await redis.hget(keys.item, 'available'))).toBe(ORDERS - count.paid);
  expect(await redis.hlen(keys.users)).toBe(count.paid);
  const released = (await service.metrics.unitsReleased.get()).values.reduce((sum, v) => sum + v.value, 0);
  expect(released).toBe(count.cancelled + count.expired);

  // Postgres agrees, order by order, and its guard counter says what was sold.
  const rows = await eventually(
    async () => (await db.query<{ id: string; status: string }>('SELECT id, status FROM orders WHERE sale_id = $1', [sale.id])).rows,
    (found) => found.length === ORDERS && found.every((row) => row.status !== 'pending_payment'),
  );
  const byId = new Map(rows.map((row) => [row.id, row.status]));
  expect(byId.size).toBe(ORDERS);
  orders.forEach((order, i) => expect(byId.get(order.id), `order ${i}`).toBe(statuses[i]));
  const sold = await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1', [sale.id]);
  expect(sold.rows).toEqual([{ sold: count.paid }]);
}, 60_000);
