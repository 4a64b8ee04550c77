// Payment, cancellation and expiry through the HTTP routes and the worker: each transition and
// each 409, status changes reaching Postgres, and unpaid stock returning to be sold again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { RunningService } from '../../../src/service.ts';
import { testApi, tokens, type SaleItemInput } from '../../support/api.ts';
import type { TestContext } from '../../support/context.ts';

const api = testApi({ role: 'all', db: true });

let ctx: TestContext;
let service: RunningService;
let db: pg.Client;
const auth = () => tokens(ctx.config.jwtSecret);

beforeAll(async () => {
  ({ ctx, service, db } = await api.open());
});

afterAll(() => api.close());

const inject = (method: 'GET' | 'POST', url: string, authorization?: string, payload?: object) =>
  service.app!.inject({ method, url, ...(authorization && { headers: { authorization } }), ...(payload && { payload }) });

async function createSale(items: SaleItemInput[], overrides: Record<string, unknown> = {}): Promise<string> {
  return (await api.createSale(items, overrides)).id;
}

async function order(saleId: string, userId: string, sku: string, quantity = 1) {
  const response = await inject('POST', `/v1/sales/${saleId}/orders`, auth().shopper(userId), { sku, quantity });
  return response;
}

async function available(saleId: string, sku: string): Promise<number> {
  const report = await inject('GET', `/v1/admin/sales/${saleId}/report`, auth().admin());
  return (report.json() as { items: { sku: string; available: number }[] }).items.find((item) => item.sku === sku)!.available;
}

async function eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('payment', () => {
  it('when the owner pays, then the order is paid, a repeat with the same ref is a no-op and another ref is refused', async () => {
    const saleId = await createSale([{ sku: 'p', stock: 5 }]);
    const { orderId } = (await order(saleId, 'payer', 'p')).json() as { orderId: string };
    const paid = await inject('POST', `/v1/orders/${orderId}/payment`, auth().shopper('payer'), { paymentRef: 'ref-1' });
    expect(paid.statusCode).toBe(200);
    expect(paid.json()).toMatchObject({ orderId, status: 'paid' });
    expect(paid.json().paidAt).toMatch(/Z$/);
    const again = await inject('POST', `/v1/orders/${orderId}/payment`, auth().shopper('payer'), { paymentRef: 'ref-1' });
    expect(again.statusCode).toBe(200);
    expect(again.json().paidAt).toBe(paid.json().paidAt);
    const other = await inject('POST', `/v1/orders/${orderId}/payment`, auth().shopper('payer'), { paymentRef: 'ref-2' });
    expect(other.json()).toMatchObject({ statusCode: 409, code: 'ORDER_ALREADY_PAID' });
    const cancel = await inject('POST', `/v1/orders/${orderId}/cancel`, auth().shopper('payer'));
    expect(cancel.json()).toMatchObject({ statusCode: 409, code: 'ORDER_ALREADY_PAID' });
    const row = await eventually(
      async () => (await db.query<{ status: string; payment_ref: string | null; paid_at: Date | null }>('SELECT status, payment_ref, paid_at FROM orders WHERE id = $1', [orderId])).rows[0],
      (value) => value?.status === 'paid',
    );
    expect(row).toMatchObject({ status: 'paid', payment_ref: 'ref-1' });
    expect(row?.paid_at).toBeInstanceOf(Date);
  });

  it("when someone else pays or cancels an order, then it is not found, and bad bodies are 400", async () => {
    const saleId = await createSale([{ sku: 'q', stock: 5 }]);
    const { orderId } = (await order(saleId, 'owner', 'q')).json() as { orderId: string };
    expect((await inject('POST', `/v1/orders/${orderId}/payment`, auth().shopper('intruder'), { paymentRef: 'x' })).json().code).toBe('ORDER_NOT_FOUND');
    expect((await inject('POST', `/v1/orders/${orderId}/cancel`, auth().shopper('intruder'))).json().code).toBe('ORDER_NOT_FOUND');
    expect((await inject('POST', `/v1/orders/${orderId}/payment`, auth().shopper('owner'), { paymentRef: '' })).json().code).toBe('VALIDATION_FAILED');
    expect((await inject('POST', `/v1/orders/${orderId}/payment`, auth().shopper('owner'), { paymentRef: 'x'.repeat(129) })).json().code).toBe('VALIDATION_FAILED');
    expect((await inject('POST', '/v1/orders/not-an-order/cancel', auth().shopper('owner'))).json().code).toBe('ORDER_NOT_FOUND');
    expect((await inject('POST', `/v1/orders/${orderId}/cancel`)).statusCode).toBe(401);
    expect(await available(saleId, 'q')).toBe(4);
  });
});

describe('cancellation', () => {
  it('when the owner cancels, then stock and the limit come back once, and paying afterwards is refused', async () => {
    const saleId = await createSale([{ sku: 'c', stock: 3, perUserLimit: 2 }]);
    const first = (await order(saleId, 'canceller', 'c', 2)).json() as { orderId: string };
    expect(await available(saleId, 'c')).toBe(1);
    expect((await order(saleId, 'canceller', 'c', 1)).json().code).toBe('PER_USER_LIMIT_EXCEEDED');

    const cancels = await Promise.all(Array.from({ length: 10 }, () => inject('POST', `/v1/orders/${first.orderId}/cancel`, auth().shopper('canceller'))));
    expect(cancels.every((response) => response.statusCode === 200 && response.json().status === 'cancelled')).toBe(true);
    expect(await available(saleId, 'c')).toBe(3);
    expect((await order(saleId, 'canceller', 'c', 2)).statusCode).toBe(201);
    const pay = await inject('POST', `/v1/orders/${first.orderId}/payment`, auth().shopper('canceller'), { paymentRef: 'late' });
    expect(pay.json().code).toBe('ORDER_CANCELLED');
    const row = await eventually(
      async () => (await db.query<{ status: string }>('SELECT status FROM orders WHERE id = $1', [first.orderId])).rows[0],
      (value) => value?.status === 'cancelled',
    );
    expect(row?.status).toBe('cancelled');
    const sold = await eventually(
      async () => (await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1', [saleId])).rows[0]?.sold,
      (value) => value === 2,
    );
    expect(sold).toBe(2);
  });
});

describe('expiry', () => {
  it('when an order is left unpaid past its window, then the sweeper expires it within seconds and its stock is sold again', async () => {
    const saleId = await createSale([{ sku: 'e', stock: 2, perUserLimit: 2 }], { paymentWindowSeconds: 1 });
    const unpaid = (await order(saleId, 'forgetful', 'e', 2)).json() as { orderId: string; expiresAt: string };
    expect((await order(saleId, 'late-shopper', 'e')).json().code).toBe('SOLD_OUT');

    const expired = await eventually(
      async () => (await inject('GET', `/v1/orders/${unpaid.orderId}`, auth().shopper('forgetful'))).json() as { status: string; expiredAt?: string },
      (value) => value.status === 'expired',
    );
    expect(expired.status).toBe('expired');
    expect(Date.parse(expired.expiredAt!) - Date.parse(unpaid.expiresAt)).toBeLessThan(3_000);
    // Sold out a moment ago; the release reopened it on this process at once.
    const again = await order(saleId, 'late-shopper', 'e');
    expect(again.statusCode).toBe(201);
    const pay = await inject('POST', `/v1/orders/${unpaid.orderId}/payment`, auth().shopper('forgetful'), { paymentRef: 'too-late' });
    expect(pay.json().code).toBe('ORDER_EXPIRED');
    const row = await eventually(
      async () => (await db.query<{ status: string; expired_at: Date | null }>('SELECT status, expired_at FROM orders WHERE id = $1', [unpaid.orderId])).rows[0],
      (value) => value?.status === 'expired',
    );
    expect(row?.expired_at).toBeInstanceOf(Date);
  });

  it('when a rush leaves a share of orders unpaid, then their stock returns and sells again, and the report adds up', async () => {
    const saleId = await createSale([{ sku: 'r', stock: 20, perUserLimit: 1, unitPrice: 100 }], { paymentWindowSeconds: 1 });
    const first = await Promise.all(Array.from({ length: 30 }, (_, i) => order(saleId, `wave1-${i}`, 'r')));
    const accepted = first.filter((response) => response.statusCode === 201).map((response) => response.json() as { orderId: string; userId: string });
    expect(accepted).toHaveLength(20);
    // Half pay, half walk away.
    await Promise.all(accepted.slice(0, 10).map((o) => inject('POST', `/v1/orders/${o.orderId}/payment`, auth().shopper(o.userId), { paymentRef: `pay-${o.orderId}` })));
    await eventually(() => available(saleId, 'r'), (value) => value === 10);
    const second = await Promise.all(Array.from({ length: 15 }, (_, i) => order(saleId, `wave2-${i}`, 'r')));
    expect(second.filter((response) => response.statusCode === 201)).toHaveLength(10);

    const report = await eventually(
      async () => (await inject('GET', `/v1/admin/sales/${saleId}/report`, auth().admin())).json() as {
        ordersAccepted: number; ordersPersisted: number; items: { paid: number; expired: number; revenue: number; available: number; reserved: number }[];
      },
      (value) => value.ordersPersisted === 30 && value.items[0]!.expired === 10,
    );
    expect(report.ordersAccepted).toBe(30);
    expect(report.items[0]).toMatchObject({ paid: 10, expired: 10, revenue: 1000, available: 0, reserved: 20 });
  });
});

// Key layout 2, end to end: the routes find an order from its id alone, pay and cancel it on its
// own shard, list it from the shopper index, and the worker's sweeper expires it on its shard.
describe('key layout 2', () => {
  async function layout2Sale(sku: string, paymentWindowSeconds = 900): Promise<string> {
    return (await api.createSale([{ sku, stock: 6, perUserLimit: 3 }], { paymentWindowSeconds })).id;
  }
  /** Stock left on the item's shards in Redis (Σ available), read directly rather than through the report. */
  const shardStock = (saleId: string, sku: string) => api.available(saleId, sku);
  async function place(saleId: string, userId: string, sku: string, quantity = 1): Promise<{ id: string; expiresAt: number }> {
    const response = await order(saleId, userId, sku, quantity);
    expect(response.statusCode, response.body).toBe(201);
    const body = response.json() as { orderId: string; expiresAt: string };
    return { id: body.orderId, expiresAt: Date.parse(body.expiresAt) };
  }

  it('when a shopper reads, pays, cancels and lists layout-2 orders, then every route answers from the order’s own shard', async () => {
    const saleId = await layout2Sale('l2');
    const toPay = await place(saleId, 'l2-shopper', 'l2', 1);
    // The list is newest first: the second order must not share the first one's millisecond.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const toCancel = await place(saleId, 'l2-shopper', 'l2', 2);
    expect(await shardStock(saleId, 'l2')).toBe(3);

    const read = await inject('GET', `/v1/orders/${toPay.id}`, auth().shopper('l2-shopper'));
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json()).toMatchObject({ orderId: toPay.id, saleId, sku: 'l2', quantity: 1, status: 'pending_payment' });
    expect((await inject('GET', `/v1/orders/${toPay.id}`, auth().shopper('l2-snoop'))).json().code).toBe('ORDER_NOT_FOUND');
    expect((await inject('GET', `/v1/orders/${toPay.id}`, auth().admin())).statusCode).toBe(200);

    const paid = await inject('POST', `/v1/orders/${toPay.id}/payment`, auth().shopper('l2-shopper'), { paymentRef: 'l2-ref' });
    expect(paid.json()).toMatchObject({ orderId: toPay.id, status: 'paid' });
    const cancelled = await inject('POST', `/v1/orders/${toCancel.id}/cancel`, auth().shopper('l2-shopper'));
    expect(cancelled.json()).toMatchObject({ orderId: toCancel.id, status: 'cancelled' });
    expect(await shardStock(saleId, 'l2')).toBe(5);

    const listed = await inject('GET', `/v1/users/me/orders?saleId=${saleId}`, auth().shopper('l2-shopper'));
    expect((listed.json() as { orders: { orderId: string; status: string }[] }).orders.map((o) => [o.orderId, o.status])).toEqual([
      [toCancel.id, 'cancelled'],
      [toPay.id, 'paid'],
    ]);
  });

  it('when a layout-2 order is left unpaid past its window, then the worker’s sweeper expires it on its shard within seconds', async () => {
    const saleId = await layout2Sale('l2e', 1);
    const unpaid = await place(saleId, 'l2-forgetful', 'l2e', 2);

    const expired = await eventually(
      async () => (await inject('GET', `/v1/orders/${unpaid.id}`, auth().shopper('l2-forgetful'))).json() as { status: string; expiredAt?: string },
      (value) => value.status === 'expired',
    );
    expect(expired.status).toBe('expired');
    expect(Date.parse(expired.expiredAt!) - unpaid.expiresAt).toBeLessThan(3_000);
    expect(await shardStock(saleId, 'l2e')).toBe(6);
  });
});
