// Values Redis would take but Postgres refuses (NUL and other control characters, lone
// surrogates, numbers past int4 or past JavaScript's safe integers) are refused at the door:
// 400/401/409 with a stable code, never a 500, and nothing is consumed or written.
import type { LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/http/app.ts';
import { MAX_ITEM_STOCK } from '../../../src/sales/sale.ts';
import { escapeUnsafe } from '../../../src/text.ts';
import { saleBody, testApi, type Tokens } from '../../support/api.ts';

const api = testApi({ db: true });
const { createSale, available, snapshot, outboxLength } = api;

let app: App;
let db: pg.Client;
let tk: Tokens;

beforeAll(async () => {
  ({ app, db, tk } = await api.open());
});

afterAll(() => api.close());

let userCounter = 0;
const newUser = () => `limits-user-${++userCounter}`;

function post(url: string, payload: unknown, authorization = tk.admin()): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url, headers: { authorization }, payload: payload as Record<string, unknown> });
}

function expectRefused(res: LightMyRequestResponse, status: number, code: string, field?: RegExp): void {
  expect(res.statusCode, res.body).toBe(status);
  const body = res.json<{ code: string; message: string }>();
  expect(body.code).toBe(code);
  if (field) expect(body.message).toMatch(field);
}

// Characters Postgres cannot store (NUL, lone surrogates) or that no identifier or reference
// should carry (the other C0 and C1 controls, DEL).
const BAD_TEXT = ['ref\u0000x', 'ref\u0001', 'ref\u001f', 'ref\u007f', 'ref\u0085', 'ref\u009f', 'ref\ud800', 'x\udfffy'];

describe('strings a caller chooses', () => {
  it.each(BAD_TEXT.map((text) => [escapeUnsafe(text), text]))(
    'when a paymentRef holds %s, then 400 VALIDATION_FAILED names it and the order stays unpaid',
    async (_label, paymentRef) => {
      const sale = await createSale([{ sku: 'a', stock: 5 }]);
      const user = newUser();
      const created = await post(`/v1/sales/${sale.id}/orders`, { sku: 'a', quantity: 1 }, tk.shopper(user));
      expect(created.statusCode, created.body).toBe(201);
      const orderId = created.json<{ orderId: string }>().orderId;
      const before = await snapshot(sale.id);

      const res = await post(`/v1/orders/${orderId}/payment`, { paymentRef }, tk.shopper(user));
      expectRefused(res, 400, 'VALIDATION_FAILED', /^body\.paymentRef must not contain control characters or lone surrogates$/);
      expect(await snapshot(sale.id)).toEqual(before);
    },
  );

  it('when a paymentRef holds ordinary Unicode (accents, CJK, emoji), then it is accepted, while a tab is refused', async () => {
    const sale = await createSale([{ sku: 'a', stock: 5 }]);
    const user = newUser();
    const created = await post(`/v1/sales/${sale.id}/orders`, { sku: 'a', quantity: 1 }, tk.shopper(user));
    const orderId = created.json<{ orderId: string }>().orderId;
    const res = await post(`/v1/orders/${orderId}/payment`, { paymentRef: 'réf-支付-🎉\t' }, tk.shopper(user));
    // A tab is a control character too: refused like the others.
    expectRefused(res, 400, 'VALIDATION_FAILED', /body\.paymentRef/);
    const ok = await post(`/v1/orders/${orderId}/payment`, { paymentRef: 'réf-支付-🎉' }, tk.shopper(user));
    expect(ok.statusCode, ok.body).toBe(200);
  });

  it('when a sale name holds NUL, then 400 VALIDATION_FAILED and no sale exists', async () => {
    const body = saleBody([{ sku: 'a', stock: 5 }], { name: 'Double\u000011' });
    expectRefused(await post('/v1/admin/sales', body), 400, 'VALIDATION_FAILED', /body\.name/);
    expect((await app.inject({ method: 'GET', url: `/v1/sales/${body.id}` })).statusCode).toBe(404);
    expect((await db.query('SELECT 1 FROM sales WHERE id = $1', [body.id])).rowCount).toBe(0);
  });

  it('when an item name holds a lone surrogate or a C1 control, then 400 VALIDATION_FAILED names it', async () => {
    for (const name of ['Phone \ud83d', 'Phone\u0085X']) {
      const body = saleBody([{ sku: 'a', stock: 5 }]);
      body.items[0]!.name = name;
      expectRefused(await post('/v1/admin/sales', body), 400, 'VALIDATION_FAILED', /body\.items\.0\.name/);
      expect((await db.query('SELECT 1 FROM sales WHERE id = $1', [body.id])).rowCount).toBe(0);
    }
  });

  it('when an Idempotency-Key holds a non-ASCII character, then 400 VALIDATION_FAILED and nothing is reserved', async () => {
    const sale = await createSale([{ sku: 'a', stock: 5 }]);
    const before = await snapshot(sale.id);
    const res = await app.inject({
      method: 'POST',
      url: `/v1/sales/${sale.id}/orders`,
      headers: { authorization: tk.shopper(newUser()), 'idempotency-key': 'key-\u00e9' },
      payload: { sku: 'a', quantity: 1 },
    });
    expectRefused(res, 400, 'VALIDATION_FAILED', /idempotency-key/);
    expect(await snapshot(sale.id)).toEqual(before);
  });

  it.each([['NUL', 'user\u0000x'], ['a C1 control', 'user\u0085'], ['a lone surrogate', 'user\ud800'], ['DEL', 'user\u007f']])(
    'when a token sub holds %s, then 401 UNAUTHORIZED and nothing is reserved',
    async (_label, sub) => {
      const sale = await createSale([{ sku: 'a', stock: 5 }]);
      const before = await snapshot(sale.id);
      const res = await post(`/v1/sales/${sale.id}/orders`, { sku: 'a', quantity: 1 }, tk.sign({ sub }));
      expectRefused(res, 401, 'UNAUTHORIZED');
      expect(await snapshot(sale.id)).toEqual(before);
      expect(await outboxLength(sale.id)).toBe(0);
    },
  );
});

describe('times', () => {
  it('when startsAt is a leap second (valid date-time, but no JavaScript time), then 400 VALIDATION_FAILED names it', async () => {
    const body = saleBody([{ sku: 'a', stock: 5 }], { startsAt: '2026-12-31T23:59:60Z' });
    expectRefused(await post('/v1/admin/sales', body), 400, 'VALIDATION_FAILED', /body\.startsAt/);
    expect((await db.query('SELECT 1 FROM sales WHERE id = $1', [body.id])).rowCount).toBe(0);
  });
});

describe('numbers summed or multiplied', () => {
  it('when an item is restocked by 1,000,000,000 three times, then the ones past the maximum are 409 STOCK_LIMIT_EXCEEDED and change nothing', async () => {
    const sale = await createSale([{ sku: 'a', stock: 0, unitPrice: 1 }]);
    const restock = () => post(`/v1/admin/sales/${sale.id}/items/a/restock`, { quantity: 1_000_000_000 });
    expect((await restock()).statusCode).toBe(200);
    for (let i = 0; i < 2; i++) expectRefused(await restock(), 409, 'STOCK_LIMIT_EXCEEDED');
    expect(await available(sale.id, 'a')).toBe(MAX_ITEM_STOCK);
    const { rows } = await db.query<{ restocked: number }>('SELECT restocked FROM sale_items WHERE sale_id = $1', [sale.id]);
    expect(rows[0]?.restocked).toBe(1_000_000_000);
  });

  it('when a restock would take the stock value past the safe integer range, then 409 STOCK_LIMIT_EXCEEDED', async () => {
    const sale = await createSale([{ sku: 'a', stock: 1_000, unitPrice: 10_000_000_000 }]);
    const res = await post(`/v1/admin/sales/${sale.id}/items/a/restock`, { quantity: 900_000 });
    expectRefused(res, 409, 'STOCK_LIMIT_EXCEEDED');
    expect(await available(sale.id, 'a')).toBe(1_000);
  });

  it('when lowStock units is 1e12, then 400 VALIDATION_FAILED and no sale exists', async () => {
    const body = saleBody([{ sku: 'a', stock: 5, lowStock: { units: 1e12 } }]);
    expectRefused(await post('/v1/admin/sales', body), 400, 'VALIDATION_FAILED', /lowStock/);
    expect((await db.query('SELECT 1 FROM sales WHERE id = $1', [body.id])).rowCount).toBe(0);
  });

  it('when a lowStock percent has more than two decimals (Postgres keeps two), then 400 VALIDATION_FAILED names it', async () => {
    const body = saleBody([{ sku: 'a', stock: 5, lowStock: { percent: 12.345 } }]);
    expectRefused(await post('/v1/admin/sales', body), 400, 'VALIDATION_FAILED', /body\.items\.0\.lowStock\.percent/);
    expect((await db.query('SELECT 1 FROM sales WHERE id = $1', [body.id])).rowCount).toBe(0);
    await createSale([{ sku: 'a', stock: 5, lowStock: { percent: 12.34 } }]);
  });

  it('when stock × unitPrice exceeds the safe integer range, then 400 VALIDATION_FAILED names the item', async () => {
    const body = saleBody([{ sku: 'a', stock: 1_000_000_000, unitPrice: 10_000_000_000 }]);
    expectRefused(await post('/v1/admin/sales', body), 400, 'VALIDATION_FAILED', /body\.items\.0/);
    expect((await db.query('SELECT 1 FROM sales WHERE id = $1', [body.id])).rowCount).toBe(0);
  });

  it('when the largest allowed orders are paid, then the report reads revenue past int4 exactly', async () => {
    const sale = await createSale([{ sku: 'a', stock: 20_000, unitPrice: 10_000_000_000, perUserLimit: 10_000 }]);
    const user = newUser();
    const created = await post(`/v1/sales/${sale.id}/orders`, { sku: 'a', quantity: 10_000 }, tk.shopper(user));
    expect(created.statusCode, created.body).toBe(201);
    const order = created.json<{ orderId: string; amount: number }>();
    expect(order.amount).toBe(100_000_000_000_000);
    expect((await post(`/v1/orders/${order.orderId}/payment`, { paymentRef: 'p-1' }, tk.shopper(user))).statusCode).toBe(200);
    // The API role does not persist: write the row as the worker would, then read the report.
    await db.query(
      `INSERT INTO orders (id, sale_id, sku, user_id, quantity, unit_price, amount, status, created_at, expires_at, paid_at, payment_ref)
       VALUES ($1, $2, 'a', $3, 10000, 10000000000, 100000000000000, 'paid', now(), now(), now(), 'p-1')`,
      [order.orderId, sale.id, user],
    );
    const report = await app.inject({ method: 'GET', url: `/v1/admin/sales/${sale.id}/report`, headers: { authorization: tk.admin() } });
    expect(report.statusCode, report.body).toBe(200);
    expect(report.json<{ items: { revenue: number; paid: number }[] }>().items[0]).toMatchObject({ revenue: 100_000_000_000_000, paid: 10_000 });
  });
});
