// The payment-outage switch end to end (issue 12, scenario payment-outage): a whole service (API,
// persister, sweeper) on a sale with a 2 s payment window. While an operator says payments are
// out, orders whose deadline passes are not expired — not by the sweeper, not by a late payment
// or cancel; when the outage ends, those due during it get their deadline moved on by its
// length exactly, a payment in the stretched window succeeds, and an unpaid one expires at its
// stretched time, once, its stock back once — and Postgres's expires_at follows.
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/http/app.ts';
import type { RunningService } from '../../../src/service.ts';
import { testApi, type Tokens } from '../../support/api.ts';

const api = testApi({ role: 'all', db: true });

let app: App;
let db: pg.Client;
let tk: Tokens;
let service: RunningService;

beforeAll(async () => {
  ({ app, db, tk, service } = await api.open());
});

afterAll(() => api.close());


interface OrderBody {
  orderId: string;
  status: string;
  expiresAt: string;
  expiredAt?: string;
}

interface OutageBody {
  active: boolean;
  state: string;
  startedAt: string | null;
  endedAt: string | null;
  stretchedOrders?: number;
}

async function reserve(saleId: string, userId: string): Promise<OrderBody> {
  const response = await app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(userId) }, payload: { sku: 'p', quantity: 1 } });
  expect(response.statusCode).toBe(201);
  return response.json<OrderBody>();
}

async function order(id: string, userId: string): Promise<OrderBody> {
  const response = await app.inject({ method: 'GET', url: `/v1/orders/${id}`, headers: { authorization: tk.shopper(userId) } });
  expect(response.statusCode).toBe(200);
  return response.json<OrderBody>();
}

async function outage(active: boolean): Promise<OutageBody> {
  const response = await app.inject({ method: 'POST', url: '/v1/admin/payments/outage', headers: { authorization: tk.admin() }, payload: { active } });
  expect(response.statusCode).toBe(200);
  return response.json<OutageBody>();
}

const pay = (id: string, userId: string) =>
  app.inject({ method: 'POST', url: `/v1/orders/${id}/payment`, headers: { authorization: tk.shopper(userId) }, payload: { paymentRef: `psp-${userId}` } });

async function gauge(name: string): Promise<number | undefined> {
  return (await service.metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value;
}

describe('payment outage', () => {
  it('when payments are out past orders\' deadlines, then nothing expires; when they are back, deadlines move on by the outage and expiry resumes, once', async () => {
    const { id: saleId } = await api.createSale([{ sku: 'p', stock: 10, perUserLimit: 1 }], { paymentWindowSeconds: 2 });
    const unpaid = await reserve(saleId, 'a'); // its deadline falls during the outage: stretched, then expires
    const paidLate = await reserve(saleId, 'c'); // paid during the outage, after its deadline
    const cancelledLate = await reserve(saleId, 'd'); // cancelled during the outage, after its deadline

    const started = await outage(true);
    expect(started).toMatchObject({ active: true, state: 'active', endedAt: null });
    expect(await outage(true)).toEqual(started); // a retried switch keeps the start
    const during = await reserve(saleId, 'b'); // made during the outage, due during it too
    expect(await gauge('flashsale_payment_outage_active')).toBe(1);
    const ready = await app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.json()).toMatchObject({ status: 'ok', paymentOutage: { state: 'active', startedAt: started.startedAt } });

    // Past every deadline (2 s window), and several sweeper rounds.
    await sleep(Math.max(0, Date.parse(during.expiresAt) - Date.now()) + 1_000);
    expect((await order(unpaid.orderId, 'a')).status).toBe('pending_payment');
    expect((await order(during.orderId, 'b')).status).toBe('pending_payment');
    // Lateness does not count while payments are out: a payment and a cancel go through.
    const latePayment = await pay(paidLate.orderId, 'c');
    expect(latePayment.statusCode).toBe(200);
    expect(latePayment.json()).toMatchObject({ status: 'paid' });
    const lateCancel = await app.inject({ method: 'POST', url: `/v1/orders/${cancelledLate.orderId}/cancel`, headers: { authorization: tk.shopper('d') } });
    expect(lateCancel.statusCode).toBe(200);
    expect(lateCancel.json()).toMatchObject({ status: 'cancelled' });

    const ended = await outage(false);
    expect(ended).toMatchObject({ active: false, state: 'none', startedAt: started.startedAt, stretchedOrders: 2 });
    const length = Date.parse(ended.endedAt!) - Date.parse(started.startedAt!);
    expect(await gauge('flashsale_payment_outage_active')).toBe(0);
    expect(await gauge('flashsale_payment_outage_stretched_orders_total')).toBe(2);
    expect((await app.inject({ method: 'GET', url: '/health/ready' })).json()).not.toHaveProperty('paymentOutage');

    // Each moved by exactly the outage's length.
    const stretchedUnpaid = await order(unpaid.orderId, 'a');
    const stretchedDuring = await order(during.orderId, 'b');
    expect(Date.parse(stretchedUnpaid.expiresAt)).toBe(Date.parse(unpaid.expiresAt) + length);
    expect(Date.parse(stretchedDuring.expiresAt)).toBe(Date.parse(during.expiresAt) + length);

    // A payment in the stretched window succeeds.
    const stretchedPayment = await pay(during.orderId, 'b');
    expect(stretchedPayment.statusCode).toBe(200);
    expect(stretchedPayment.json()).toMatchObject({ status: 'paid' });

    // The unpaid one expires at its stretched deadline — not before — and gives its unit back once.
    const deadline = Date.parse(stretchedUnpaid.expiresAt);
    let seen = stretchedUnpaid;
    while (seen.status === 'pending_payment' && Date.now() < deadline + 10_000) {
      await sleep(100);
      seen = await order(unpaid.orderId, 'a');
    }
    expect(seen.status).toBe('expired');
    expect(Date.parse(seen.expiredAt!)).toBeGreaterThanOrEqual(deadline);
    // 10 units: c and b paid, a expired, d cancelled.
    expect(await api.available(saleId, 'p')).toBe(8);

    // Postgres follows: the stretched deadlines, the final statuses, the guard's count.
    const deadlineOf = async () =>
      (await db.query<{ id: string; status: string; expires_at: Date }>('SELECT id::text, status, expires_at FROM orders WHERE sale_id = $1', [saleId])).rows;
    let rows = await deadlineOf();
    for (let i = 0; i < 100 && !(rows.length === 4 && rows.find((r) => r.id === unpaid.orderId)?.status === 'expired'); i++) {
      await sleep(100);
      rows = await deadlineOf();
    }
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(byId.get(unpaid.orderId)).toMatchObject({ status: 'expired', expires_at: new Date(deadline) });
    expect(byId.get(during.orderId)).toMatchObject({ status: 'paid', expires_at: new Date(Date.parse(stretchedDuring.expiresAt)) });
    expect(byId.get(paidLate.orderId)?.status).toBe('paid');
    expect(byId.get(cancelledLate.orderId)?.status).toBe('cancelled');
    expect((await db.query('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId])).rows).toEqual([{ sold: 2 }]);
  });

  it('when the switch is sent something other than {"active": boolean}, or by a shopper, then it is refused', async () => {
    const bad = await app.inject({ method: 'POST', url: '/v1/admin/payments/outage', headers: { authorization: tk.admin() }, payload: { active: 'yes' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'VALIDATION_FAILED' });
    const extra = await app.inject({ method: 'POST', url: '/v1/admin/payments/outage', headers: { authorization: tk.admin() }, payload: { active: true, why: 'x' } });
    expect(extra.statusCode).toBe(400);
    const shopper = await app.inject({ method: 'POST', url: '/v1/admin/payments/outage', headers: { authorization: tk.shopper('s') }, payload: { active: true } });
    expect(shopper.statusCode).toBe(403);
    const nobody = await app.inject({ method: 'GET', url: '/v1/admin/payments/outage' });
    expect(nobody.statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/v1/admin/payments/outage', headers: { authorization: tk.admin() } })).json()).toMatchObject({ active: false, state: 'none' });
  });
});
