// The storefront's HTTP contract (API.md) through app.inject against real Redis and Postgres:
// every status and error code of GET /v1/sales/:saleId, POST /v1/sales/:saleId/orders,
// GET /v1/orders/:orderId and GET /v1/users/me/orders, and that no refused or malformed attempt
// moves stock or a shopper's live quantity.
import { STATUS_CODES } from 'node:http';
import type { Redis } from 'ioredis';
import type { LightMyRequestResponse } from 'fastify';
import { uuidv7 } from 'uuidv7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/http/app.ts';
import { orderKeyOf, shardKeys } from '../../../src/stock/keys.ts';
import { testApi, tokens, type SaleItemInput, type Tokens } from '../../support/api.ts';
import type { ErrorJson, OrderJson, SaleJson } from '../../support/api-json.ts';
import type { TestContext } from '../../support/context.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const HOUR_MS = 3_600_000;

const api = testApi();
const { available, liveQuantity, outboxLength } = api;

let ctx: TestContext;
let app: App;
let redis: Redis;
let tk: Tokens;

beforeAll(async () => {
  ({ ctx, app, redis, tk } = await api.open());
});

afterAll(() => api.close());

let userCounter = 0;
const newUser = (label = 'u') => `${label}-${++userCounter}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function createSale(items: SaleItemInput[], overrides: Record<string, unknown> = {}): Promise<string> {
  return (await api.createSale(items, overrides)).id;
}

interface OrderOptions {
  user?: string;
  key?: string;
  authorization?: string | null;
  headers?: Record<string, string>;
}

function order(saleId: string, payload: unknown, options: OrderOptions = {}): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.authorization !== null) headers.authorization = options.authorization ?? tk.shopper(options.user ?? 'anonymous-shopper');
  if (options.key !== undefined) headers['idempotency-key'] = options.key;
  return app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers, payload: payload as Record<string, unknown> });
}

async function admin(url: string, payload?: Record<string, unknown>): Promise<LightMyRequestResponse> {
  const res = await app.inject({ method: 'POST', url, headers: { authorization: tk.admin() }, ...(payload && { payload }) });
  expect(res.statusCode, res.body).toBe(200);
  return res;
}

/** Runs `act` and asserts stock, the user's live quantity and the outbox did not move. */
async function expectNothingChanges(saleId: string, sku: string, userId: string, act: () => Promise<void>): Promise<void> {
  const before = [await available(saleId, sku), await liveQuantity(saleId, sku, userId), await outboxLength(saleId)];
  await act();
  const after = [await available(saleId, sku), await liveQuantity(saleId, sku, userId), await outboxLength(saleId)];
  expect(after, 'available, live quantity, outbox length').toEqual(before);
}

function expectRequestId(res: LightMyRequestResponse): void {
  const id = res.headers['x-request-id'];
  expect(typeof id === 'string' && id.length > 0, `x-request-id on ${res.statusCode}`).toBe(true);
}

/** Exactly Fastify's error shape with the given status and code, plus x-request-id. */
function expectError(res: LightMyRequestResponse, statusCode: number, code: string): ErrorJson {
  expect(res.statusCode, res.body).toBe(statusCode);
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  const body = res.json<ErrorJson>();
  expect(Object.keys(body).sort()).toEqual(['code', 'error', 'message', 'statusCode']);
  expect(body).toMatchObject({ statusCode, code, error: STATUS_CODES[statusCode] });
  expect(typeof body.message).toBe('string');
  expect(body.message.length).toBeGreaterThan(0);
  expectRequestId(res);
  return body;
}

function expectCreated(res: LightMyRequestResponse): OrderJson {
  expect(res.statusCode, res.body).toBe(201);
  const body = res.json<OrderJson>();
  expect(res.headers.location).toBe(`/v1/orders/${body.orderId}`);
  expectRequestId(res);
  return body;
}

describe('GET /v1/sales/:saleId', () => {
  it('when the sale exists, then it answers 200 with the contract fields, without a token', async () => {
    const saleId = await createSale([
      { sku: 'phone-x', stock: 7, perUserLimit: 2, unitPrice: 399_900 },
      { sku: 'case.y_1', stock: 0, perUserLimit: 1, unitPrice: 1_000 },
    ]);
    const res = await app.inject({ method: 'GET', url: `/v1/sales/${saleId}` });
    expect(res.statusCode, res.body).toBe(200);
    expectRequestId(res);
    const sale = res.json<SaleJson>();
    expect(Object.keys(sale).sort()).toEqual(['currency', 'endsAt', 'id', 'items', 'name', 'serverTime', 'startsAt', 'status']);
    expect(sale).toMatchObject({ id: saleId, name: 'Double 11', status: 'active', currency: 'CNY' });
    for (const time of [sale.startsAt, sale.endsAt, sale.serverTime]) expect(time).toMatch(ISO);
    expect(Math.abs(Date.parse(sale.serverTime) - Date.now())).toBeLessThan(5_000);
    const bySku = new Map(sale.items.map((item) => [item.sku, item]));
    expect(bySku.get('phone-x')).toEqual({ sku: 'phone-x', name: 'Item phone-x', unitPrice: 399_900, perUserLimit: 2, available: 7, state: 'listed' });
    expect(bySku.get('case.y_1')).toMatchObject({ available: 0, state: 'sold_out' });
  });

  it('when the sale id is unknown, then it answers 404 SALE_NOT_FOUND', async () => {
    expectError(await app.inject({ method: 'GET', url: '/v1/sales/no-such-sale' }), 404, 'SALE_NOT_FOUND');
  });

  it('when the caller sends x-request-id, then the response echoes it', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/sales/no-such-sale', headers: { 'x-request-id': 'trace-abc.123' } });
    expect(res.headers['x-request-id']).toBe('trace-abc.123');
  });

  it('when the sale is in the future, past its end, or closed, then its status says so', async () => {
    const now = Date.now();
    const future = await createSale([{ sku: 'a', stock: 1 }], { startsAt: new Date(now + HOUR_MS).toISOString(), endsAt: new Date(now + 2 * HOUR_MS).toISOString() });
    const past = await createSale([{ sku: 'a', stock: 1 }], { startsAt: new Date(now - 2 * HOUR_MS).toISOString(), endsAt: new Date(now - HOUR_MS).toISOString() });
    const closed = await createSale([{ sku: 'a', stock: 1 }]);
    await admin(`/v1/admin/sales/${closed}/close`);
    await sleep(1_100); // the public view may lag by up to a second
    const status = async (id: string) => (await app.inject({ method: 'GET', url: `/v1/sales/${id}` })).json<SaleJson>().status;
    expect([await status(future), await status(past), await status(closed)]).toEqual(['scheduled', 'ended', 'closed']);
  });

  it('when an order is accepted, then GET shows the new availability within a second', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 9, perUserLimit: 3 }]);
    expectCreated(await order(saleId, { sku: 'a', quantity: 3 }, { user: newUser() }));
    await sleep(1_100);
    const sale = (await app.inject({ method: 'GET', url: `/v1/sales/${saleId}` })).json<SaleJson>();
    expect(sale.items[0]).toMatchObject({ sku: 'a', available: 6, state: 'listed' });
  });
});

describe('POST /v1/sales/:saleId/orders — accepted and replayed', () => {
  it('when a shopper orders a listed item, then 201 carries the order, a Location header, and stock and the limit move by the quantity', async () => {
    const saleId = await createSale([{ sku: 'phone-x', stock: 10, perUserLimit: 3, unitPrice: 399_900 }], { paymentWindowSeconds: 600 });
    const user = newUser();
    const res = await order(saleId, { sku: 'phone-x', quantity: 2 }, { user });
    const body = expectCreated(res);
    expect(Object.keys(body).sort()).toEqual(['amount', 'createdAt', 'expiresAt', 'orderId', 'quantity', 'saleId', 'sku', 'status', 'unitPrice', 'userId']);
    expect(body).toMatchObject({ saleId, sku: 'phone-x', userId: user, quantity: 2, unitPrice: 399_900, amount: 799_800, status: 'pending_payment' });
    expect(body.orderId).toMatch(UUID_V7);
    expect(body.createdAt).toMatch(ISO);
    expect(Date.parse(body.expiresAt) - Date.parse(body.createdAt)).toBe(600_000);
    expect(res.headers['idempotent-replayed']).toBeUndefined();
    expect(await available(saleId, 'phone-x')).toBe(8);
    expect(await liveQuantity(saleId, 'phone-x', user)).toBe(2);
  });

  it('when two orders are made without a key, then each is a new order with a later-sorting id', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    const user = newUser();
    const first = expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user }));
    const second = expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user }));
    expect(second.orderId).not.toBe(first.orderId);
    expect(second.orderId > first.orderId).toBe(true);
    expect(await available(saleId, 'a')).toBe(8);
  });

  it('when the same Idempotency-Key and body are sent again, then the same order is returned with idempotent-replayed: true and stock moves once', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    const user = newUser();
    const first = await order(saleId, { sku: 'a', quantity: 2 }, { user, key: 'checkout-1' });
    const created = expectCreated(first);
    for (let i = 0; i < 2; i++) {
      const replay = await order(saleId, { sku: 'a', quantity: 2 }, { user, key: 'checkout-1' });
      expect(expectCreated(replay)).toEqual(created);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.headers.location).toBe(first.headers.location);
    }
    expect(await available(saleId, 'a')).toBe(8);
    expect(await liveQuantity(saleId, 'a', user)).toBe(2);
    expect(await outboxLength(saleId)).toBe(1);
  });

  it('when a keyed order is replayed within a second of its sale being created, then the same order comes back (not 500)', async () => {
    // Warm whatever per-process list of live sales the lookup keeps …
    expect((await app.inject({ method: 'GET', url: `/v1/orders/${uuidv7()}`, headers: { authorization: tk.shopper('warm') } })).statusCode).toBe(404);
    // … then a new sale, an order and its replay, all within the same second.
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    const user = newUser();
    const created = expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'fresh-sale' }));
    const replay = await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'fresh-sale' });
    expect(expectCreated(replay)).toEqual(created);
    expect(replay.headers['idempotent-replayed']).toBe('true');
  });

  it('when a replay arrives after the sale closed, then the original order is still returned', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    const user = newUser();
    const created = expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'late-retry' }));
    await admin(`/v1/admin/sales/${saleId}/close`);
    const replay = await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'late-retry' });
    expect(expectCreated(replay).orderId).toBe(created.orderId);
    expect(replay.headers['idempotent-replayed']).toBe('true');
  });

  it('when another shopper uses the same Idempotency-Key, then it makes that shopper a new order (keys are scoped to the user)', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    const mine = expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user: newUser(), key: 'shared-key' }));
    const otherUser = newUser();
    const theirs = await order(saleId, { sku: 'a', quantity: 1 }, { user: otherUser, key: 'shared-key' });
    expect(expectCreated(theirs).orderId).not.toBe(mine.orderId);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    expect(theirs.json<OrderJson>().userId).toBe(otherUser);
    expect(await available(saleId, 'a')).toBe(8);
  });

  it('when the Idempotency-Key already made an order with a different quantity, then 422 IDEMPOTENCY_KEY_REUSED and nothing changes; on another SKU it is another key', async () => {
    const saleId = await createSale([
      { sku: 'a', stock: 10, perUserLimit: 5 },
      { sku: 'b', stock: 10, perUserLimit: 5 },
    ]);
    const user = newUser();
    expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'k-422' }));
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 2 }, { user, key: 'k-422' }), 422, 'IDEMPOTENCY_KEY_REUSED');
    });
    // Keys are scoped to the user, the sale and the SKU (each item's shard keeps its own keys).
    const other = await order(saleId, { sku: 'b', quantity: 1 }, { user, key: 'k-422' });
    expectCreated(other);
    expect(other.json<{ sku: string }>().sku).toBe('b');
  });

  it('when a keyed attempt was refused, then the same key may be retried and make the order', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 5, perUserLimit: 5 }]);
    const user = newUser();
    await admin(`/v1/admin/sales/${saleId}/items/a/delist`);
    expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'retry-me' }), 409, 'ITEM_DELISTED');
    await admin(`/v1/admin/sales/${saleId}/items/a/relist`);
    const retried = await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'retry-me' });
    expectCreated(retried);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
    expect(await available(saleId, 'a')).toBe(4);
  });
});

describe('POST /v1/sales/:saleId/orders — refusals leave stock and limits unchanged', () => {
  it('when the sale is unknown, then 404 SALE_NOT_FOUND', async () => {
    const res = await order('no-such-sale', { sku: 'a', quantity: 1 }, { user: newUser() });
    expectError(res, 404, 'SALE_NOT_FOUND');
  });

  it('when the SKU is not in the sale, then 404 ITEM_NOT_FOUND and the sale is untouched', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 5 }]);
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'not-in-sale', quantity: 1 }, { user }), 404, 'ITEM_NOT_FOUND');
    });
  });

  it('when the sale has not started, then 409 SALE_NOT_STARTED', async () => {
    const now = Date.now();
    const saleId = await createSale([{ sku: 'a', stock: 5 }], { startsAt: new Date(now + HOUR_MS).toISOString(), endsAt: new Date(now + 2 * HOUR_MS).toISOString() });
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'SALE_NOT_STARTED');
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'early' }), 409, 'SALE_NOT_STARTED');
    });
  });

  it('when the sale is past its endsAt, then 409 SALE_ENDED', async () => {
    const now = Date.now();
    const saleId = await createSale([{ sku: 'a', stock: 5 }], { startsAt: new Date(now - 2 * HOUR_MS).toISOString(), endsAt: new Date(now - HOUR_MS).toISOString() });
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'SALE_ENDED');
    });
  });

  it('when an operator closed the sale, then 409 SALE_ENDED for every item, keyed or not', async () => {
    const saleId = await createSale([
      { sku: 'a', stock: 5 },
      { sku: 'b', stock: 5 },
    ]);
    const user = newUser();
    expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user }));
    await admin(`/v1/admin/sales/${saleId}/close`);
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'SALE_ENDED');
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'after-close' }), 409, 'SALE_ENDED');
    });
    await expectNothingChanges(saleId, 'b', user, async () => {
      expectError(await order(saleId, { sku: 'b', quantity: 1 }, { user }), 409, 'SALE_ENDED');
    });
  });

  it('when an operator delisted the item, then 409 ITEM_DELISTED', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 5 }]);
    const user = newUser();
    await admin(`/v1/admin/sales/${saleId}/items/a/delist`);
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'ITEM_DELISTED');
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'delisted' }), 409, 'ITEM_DELISTED');
    });
  });

  it('when an order takes stock down to the low-stock level (units), then that order is accepted and the next is 409 ITEM_DELISTED', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 10, lowStock: { units: 4 } }]);
    expectCreated(await order(saleId, { sku: 'a', quantity: 5 }, { user: newUser() }));
    expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user: newUser() })); // 10 → 5 → 4: at the level
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'ITEM_DELISTED');
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'low' }), 409, 'ITEM_DELISTED');
    });
    expect(await available(saleId, 'a')).toBe(4);
    expect(await redis.hget(shardKeys(ctx.config.redis.prefix, saleId, 'a', 0).item, 'delisted')).toBe('low_stock');
  });

  it('when an order takes stock below the low-stock level (percent), then the next attempt is 409 ITEM_DELISTED and GET shows the item delisted', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 10, lowStock: { percent: 20 } }]);
    expectCreated(await order(saleId, { sku: 'a', quantity: 9 }, { user: newUser() })); // 1 left ≤ 20 % of 10
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'ITEM_DELISTED');
    });
    await sleep(1_100);
    const sale = (await app.inject({ method: 'GET', url: `/v1/sales/${saleId}` })).json<SaleJson>();
    expect(sale.items[0]).toMatchObject({ available: 1, state: 'delisted' });
  });

  it('when an item is created at or below its low-stock level, then it starts delisted', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 3, perUserLimit: 1, lowStock: { units: 3 } }]);
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'ITEM_DELISTED');
    });
  });

  it('when the item is sold out, then 409 SOLD_OUT, keyed or not', async () => {
    const saleId = await createSale([
      { sku: 'a', stock: 1, perUserLimit: 1 },
      { sku: 'zero', stock: 0, perUserLimit: 1 },
    ]);
    expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user: newUser() }));
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'SOLD_OUT');
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'SOLD_OUT'); // the in-memory fast path
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'sold' }), 409, 'SOLD_OUT');
    });
    await expectNothingChanges(saleId, 'zero', user, async () => {
      expectError(await order(saleId, { sku: 'zero', quantity: 1 }, { user }), 409, 'SOLD_OUT');
    });
    expect(await available(saleId, 'a')).toBe(0);
  });

  it('when fewer units are left than asked for, then 409 INSUFFICIENT_STOCK and a smaller quantity still succeeds', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 2, perUserLimit: 5 }]);
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 3 }, { user }), 409, 'INSUFFICIENT_STOCK');
    });
    expectCreated(await order(saleId, { sku: 'a', quantity: 2 }, { user }));
    expect(await available(saleId, 'a')).toBe(0);
  });

  it('when the user would go over perUserLimit, then 409 PER_USER_LIMIT_EXCEEDED, while another user may still buy', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 2 }]);
    const user = newUser();
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 3 }, { user }), 409, 'PER_USER_LIMIT_EXCEEDED');
    });
    expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user }));
    expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'second' }));
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user }), 409, 'PER_USER_LIMIT_EXCEEDED');
      expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'third' }), 409, 'PER_USER_LIMIT_EXCEEDED');
    });
    expect(await liveQuantity(saleId, 'a', user)).toBe(2);
    expectCreated(await order(saleId, { sku: 'a', quantity: 2 }, { user: newUser() }));
    expect(await available(saleId, 'a')).toBe(6);
  });

  it('when several rules refuse at once, then the first in the contract order is reported', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 2, perUserLimit: 1 }]);
    const user = newUser();
    expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'k' }));
    // Over the limit, more than is left, reused key and delisted: delisted comes first …
    await admin(`/v1/admin/sales/${saleId}/items/a/delist`);
    expectError(await order(saleId, { sku: 'a', quantity: 2 }, { user, key: 'k' }), 409, 'ITEM_DELISTED');
    await admin(`/v1/admin/sales/${saleId}/items/a/relist`);
    // … then stock, then the per-user limit, then the reused key.
    expectError(await order(saleId, { sku: 'a', quantity: 2 }, { user, key: 'k' }), 409, 'INSUFFICIENT_STOCK');
    expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'k2' }), 409, 'PER_USER_LIMIT_EXCEEDED');
    // … and a closed sale beats them all.
    await admin(`/v1/admin/sales/${saleId}/close`);
    expectError(await order(saleId, { sku: 'a', quantity: 2 }, { user, key: 'k3' }), 409, 'SALE_ENDED');
    expect(await available(saleId, 'a')).toBe(1);
  });
});

describe('POST /v1/sales/:saleId/orders — per-user rate limit', () => {
  const limitedApp = api.apiWith({ RATE_LIMIT_USER_PER_SEC: '3' });

  it('when a shopper stays within 3 attempts a second, then every attempt is decided normally (201), not rate-limited', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    const user = newUser('polite');
    const first = await limitedApp().inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(user) }, payload: { sku: 'a', quantity: 1 } });
    expectCreated(first);
    const second = await limitedApp().inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(user) }, payload: { sku: 'a', quantity: 1 } });
    expectCreated(second);
    expect(await available(saleId, 'a')).toBe(8);
  });

  it('when a shopper fires more than 3 attempts within a second, then the extra ones get 429 RATE_LIMITED with Retry-After and take no stock', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 100, perUserLimit: 100 }]);
    const user = newUser('eager');
    const attempts = await Promise.all(
      Array.from({ length: 10 }, () =>
        limitedApp().inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(user) }, payload: { sku: 'a', quantity: 1 } }),
      ),
    );
    const created = attempts.filter((res) => res.statusCode === 201);
    const limitedOnes = attempts.filter((res) => res.statusCode === 429);
    expect(created.length + limitedOnes.length).toBe(10);
    // A fixed one-second window: at most 3 per window, and the burst spans at most two.
    expect(created.length).toBeGreaterThanOrEqual(1);
    expect(created.length).toBeLessThanOrEqual(6);
    expect(limitedOnes.length).toBeGreaterThanOrEqual(4);
    for (const res of limitedOnes) {
      expectError(res, 429, 'RATE_LIMITED');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    expect(await available(saleId, 'a')).toBe(100 - created.length);
    expect(await liveQuantity(saleId, 'a', user)).toBe(created.length);

    // The limit is per shopper: someone else is served at once.
    const other = await limitedApp().inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper(newUser('calm')) }, payload: { sku: 'a', quantity: 1 } });
    expectCreated(other);
  });
});

describe('POST /v1/sales/:saleId/orders — authentication', () => {
  const nowSeconds = () => Math.floor(Date.now() / 1000);
  const badTokens: [string, () => string | null][] = [
    ['there is no Authorization header', () => null],
    ['the header is not a bearer token', () => 'Basic dXNlcjpwYXNz'],
    ['the bearer token is not a JWT', () => 'Bearer not-a-jwt'],
    ['the JWT is truncated', () => tk.shopper('u-trunc').slice(0, -10)],
    ['the JWT expired (exp in the past)', () => tk.sign({ sub: 'u-expired', exp: nowSeconds() - 60 })],
    ['the JWT is signed with another secret', () => tokens('another-secret-at-least-16-chars').shopper('u-forged')],
    ['the JWT has no sub', () => tk.sign({ role: 'shopper' })],
    ['the JWT sub is not a string', () => tk.sign({ sub: 42 })],
    ['the JWT sub is longer than 128 chars', () => tk.sign({ sub: 'x'.repeat(129) })],
    ['the JWT is unsigned (alg none)', () => {
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      return `Bearer ${encode({ alg: 'none', typ: 'JWT' })}.${encode({ sub: 'u-none' })}.`;
    }],
  ];

  it.each(badTokens)('when %s, then 401 UNAUTHORIZED and nothing changes', async (_label, authorization) => {
    const saleId = await createSale([{ sku: 'a', stock: 5 }]);
    const before = await outboxLength(saleId);
    const res = await order(saleId, { sku: 'a', quantity: 1 }, { authorization: authorization() });
    expectError(res, 401, 'UNAUTHORIZED');
    expect(await available(saleId, 'a')).toBe(5);
    expect(await outboxLength(saleId)).toBe(before);
  });

  it('when the JWT carries an exp in the future, then it is accepted', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 5 }]);
    const res = await order(saleId, { sku: 'a', quantity: 1 }, { authorization: tk.sign({ sub: 'u-exp-ok', exp: nowSeconds() + 600 }) });
    expect(expectCreated(res).userId).toBe('u-exp-ok');
  });

  it('when the token is missing, then GET /v1/orders/:id and GET /v1/users/me/orders answer 401 too', async () => {
    expectError(await app.inject({ method: 'GET', url: `/v1/orders/${uuidv7()}` }), 401, 'UNAUTHORIZED');
    expectError(await app.inject({ method: 'GET', url: '/v1/users/me/orders' }), 401, 'UNAUTHORIZED');
    expectError(await app.inject({ method: 'GET', url: '/v1/users/me/orders', headers: { authorization: tk.sign({ sub: 'u', exp: nowSeconds() - 1 }) } }), 401, 'UNAUTHORIZED');
  });
});

describe('POST /v1/sales/:saleId/orders — malformed requests', () => {
  let saleId: string;
  const user = 'validation-shopper';

  beforeAll(async () => {
    saleId = await createSale([{ sku: 'a', stock: 50, perUserLimit: 5 }]);
  });

  const invalidBodies: [string, unknown, string][] = [
    ['quantity is the string "1" (no coercion)', { sku: 'a', quantity: '1' }, 'body.quantity'],
    ['quantity is 0', { sku: 'a', quantity: 0 }, 'body.quantity'],
    ['quantity is negative', { sku: 'a', quantity: -1 }, 'body.quantity'],
    ['quantity is not an integer', { sku: 'a', quantity: 1.5 }, 'body.quantity'],
    ['quantity is missing', { sku: 'a' }, 'body.quantity'],
    ['the body has an unknown property', { sku: 'a', quantity: 1, colour: 'red' }, 'body.colour'],
    ['sku is missing', { quantity: 1 }, 'body.sku'],
    ['sku does not match the pattern', { sku: '-a', quantity: 1 }, 'body.sku'],
    ['sku has a space', { sku: 'a b', quantity: 1 }, 'body.sku'],
    ['sku is longer than 64 chars', { sku: 'a'.repeat(65), quantity: 1 }, 'body.sku'],
    ['sku is a number', { sku: 7, quantity: 1 }, 'body.sku'],
    ['the body is an array', [{ sku: 'a', quantity: 1 }], 'body'],
  ];

  it.each(invalidBodies)('when %s, then 400 VALIDATION_FAILED names the field and nothing changes', async (_label, payload, field) => {
    await expectNothingChanges(saleId, 'a', user, async () => {
      const body = expectError(await order(saleId, payload, { user }), 400, 'VALIDATION_FAILED');
      expect(body.message.startsWith(`${field} `) || body.message === field, body.message).toBe(true);
    });
  });

  const invalidKeys: [string, string][] = [
    ['longer than 128 chars', 'k'.repeat(129)],
    ['empty', ''],
    ['not printable ASCII', 'clé-idempotente'],
  ];

  it.each(invalidKeys)('when the Idempotency-Key header is %s, then 400 VALIDATION_FAILED names the header and nothing changes', async (_label, key) => {
    await expectNothingChanges(saleId, 'a', user, async () => {
      const body = expectError(await order(saleId, { sku: 'a', quantity: 1 }, { user, key }), 400, 'VALIDATION_FAILED');
      expect(body.message).toMatch(/^headers\.idempotency-key /);
    });
  });

  it('when the Idempotency-Key is exactly 128 printable chars, then it is accepted', async () => {
    const res = await order(saleId, { sku: 'a', quantity: 1 }, { user: newUser(), key: `${'~ !'.repeat(42)}ab` });
    expectCreated(res);
  });

  it('when the sale id in the path does not match the id pattern, then 400 VALIDATION_FAILED names params.saleId', async () => {
    const body = expectError(await order('bad%20id', { sku: 'a', quantity: 1 }, { user }), 400, 'VALIDATION_FAILED');
    expect(body.message).toMatch(/^params\.saleId /);
  });

  it('when the body is not valid JSON, then 400 VALIDATION_FAILED and nothing changes', async () => {
    await expectNothingChanges(saleId, 'a', user, async () => {
      const res = await app.inject({
        method: 'POST',
        url: `/v1/sales/${saleId}/orders`,
        headers: { authorization: tk.shopper(user), 'content-type': 'application/json' },
        payload: '{"sku": "a", "quantity": 1',
      });
      expectError(res, 400, 'VALIDATION_FAILED');
    });
  });

  it('when the body is over 16 KiB, then 413 and nothing changes', async () => {
    await expectNothingChanges(saleId, 'a', user, async () => {
      const payload = JSON.stringify({ sku: 'a', quantity: 1, padding: 'x'.repeat(16 * 1024) });
      const res = await app.inject({
        method: 'POST',
        url: `/v1/sales/${saleId}/orders`,
        headers: { authorization: tk.shopper(user), 'content-type': 'application/json' },
        payload,
      });
      expectError(res, 413, 'PAYLOAD_TOO_LARGE');
    });
  });

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'application/xml'])(
    'when the content type is %s, then 415 UNSUPPORTED_MEDIA_TYPE and nothing changes',
    async (contentType) => {
      await expectNothingChanges(saleId, 'a', user, async () => {
        const res = await app.inject({
          method: 'POST',
          url: `/v1/sales/${saleId}/orders`,
          headers: { authorization: tk.shopper(user), 'content-type': contentType },
          payload: '{"sku":"a","quantity":1}',
        });
        expectError(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
      });
    },
  );

  it('when a request is both unauthenticated and malformed, then authentication answers first (401)', async () => {
    await expectNothingChanges(saleId, 'a', user, async () => {
      expectError(await order(saleId, { sku: 'a', quantity: '1' }, { authorization: null }), 401, 'UNAUTHORIZED');
    });
  });
});

describe('GET /v1/orders/:orderId', () => {
  let saleId: string;
  let owner: string;
  let placed: OrderJson;

  beforeAll(async () => {
    saleId = await createSale([{ sku: 'a', stock: 5, perUserLimit: 2 }]);
    owner = newUser('owner');
    placed = expectCreated(await order(saleId, { sku: 'a', quantity: 2 }, { user: owner }));
  });

  const getOrder = (orderId: string, authorization: string) => app.inject({ method: 'GET', url: `/v1/orders/${orderId}`, headers: { authorization } });

  it('when the owner reads the order right after the 201, then 200 returns the same order (read-your-writes)', async () => {
    const res = await getOrder(placed.orderId, tk.shopper(owner));
    expect(res.statusCode, res.body).toBe(200);
    expectRequestId(res);
    expect(res.json<OrderJson>()).toEqual(placed);
  });

  it('when the Location header of a 201 is followed at once, then the order is there', async () => {
    const user = newUser();
    const created = await order(saleId, { sku: 'a', quantity: 1 }, { user });
    const location = created.headers.location;
    expect(typeof location).toBe('string');
    const res = await app.inject({ method: 'GET', url: String(location), headers: { authorization: tk.shopper(user) } });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<OrderJson>().orderId).toBe(expectCreated(created).orderId);
  });

  it('when an admin reads any order, then 200', async () => {
    const res = await getOrder(placed.orderId, tk.admin());
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<OrderJson>()).toEqual(placed);
  });

  it("when another shopper reads the order, then 404 ORDER_NOT_FOUND, exactly as for an unknown id", async () => {
    const theirs = expectError(await getOrder(placed.orderId, tk.shopper(newUser('snoop'))), 404, 'ORDER_NOT_FOUND');
    const unknown = expectError(await getOrder(uuidv7(), tk.shopper(newUser('snoop'))), 404, 'ORDER_NOT_FOUND');
    expect(theirs.message).toBe(unknown.message);
  });

  it.each([
    ['a well-formed but unknown UUIDv7', () => uuidv7()],
    ['a garbage id', () => 'not-an-order-id'],
    ['an id with SQL in it', () => encodeURIComponent("1' OR '1'='1")],
    ['a UUID with the wrong case and no dashes', () => placed.orderId.replaceAll('-', '').toUpperCase()],
  ])('when the id is %s, then 404 ORDER_NOT_FOUND', async (_label, id) => {
    expectError(await getOrder(id(), tk.shopper(owner)), 404, 'ORDER_NOT_FOUND');
  });

  it('when a sale is created just after an order lookup, then an order on it is still readable at once', async () => {
    // A lookup first, so that any per-process cache is warm …
    expect((await getOrder(uuidv7(), tk.shopper(owner))).statusCode).toBe(404);
    // … then a brand-new sale and an order on it: read-your-writes must hold all the same (the
    // id names the order's slot, and the shopper index lists it, with no list of live sales).
    const freshSale = await createSale([{ sku: 'a', stock: 5 }]);
    const user = newUser();
    const created = expectCreated(await order(freshSale, { sku: 'a', quantity: 1 }, { user }));
    const res = await getOrder(created.orderId, tk.shopper(user));
    expect(res.statusCode, res.body).toBe(200);
    const listed = await app.inject({ method: 'GET', url: '/v1/users/me/orders', headers: { authorization: tk.shopper(user) } });
    expect(listed.json<{ orders: OrderJson[] }>().orders.map((o) => o.orderId)).toEqual([created.orderId]);
  });
});

describe('GET /v1/users/me/orders', () => {
  it("when a shopper has orders in two sales, then 200 lists only that shopper's, newest first, filtered by saleId on request", async () => {
    const first = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    const second = await createSale([{ sku: 'b', stock: 10, perUserLimit: 5 }]);
    const user = newUser('history');
    const o1 = expectCreated(await order(first, { sku: 'a', quantity: 1 }, { user }));
    await sleep(5);
    const o2 = expectCreated(await order(second, { sku: 'b', quantity: 2 }, { user }));
    await sleep(5);
    const o3 = expectCreated(await order(first, { sku: 'a', quantity: 1 }, { user, key: 'h3' }));
    expectCreated(await order(first, { sku: 'a', quantity: 1 }, { user: newUser('someone-else') }));

    const list = async (query: string) => {
      const res = await app.inject({ method: 'GET', url: `/v1/users/me/orders${query}`, headers: { authorization: tk.shopper(user) } });
      expect(res.statusCode, res.body).toBe(200);
      expectRequestId(res);
      return res.json<{ orders: OrderJson[] }>().orders;
    };
    expect(await list('')).toEqual([o3, o2, o1]);
    expect(await list(`?saleId=${first}`)).toEqual([o3, o1]);
    expect(await list(`?saleId=${second}`)).toEqual([o2]);
    expect(await list('?saleId=no-such-sale')).toEqual([]);
  });

  it('when a shopper has no orders, then 200 with an empty list', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/users/me/orders', headers: { authorization: tk.shopper(newUser('new')) } });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<{ orders: OrderJson[] }>()).toEqual({ orders: [] });
  });

  it('when the query has a bad saleId or an unknown parameter, then 400 VALIDATION_FAILED names it', async () => {
    const auth = { authorization: tk.shopper(newUser()) };
    const bad = expectError(await app.inject({ method: 'GET', url: '/v1/users/me/orders?saleId=-bad', headers: auth }), 400, 'VALIDATION_FAILED');
    expect(bad.message).toMatch(/^querystring\.saleId /);
    const unknown = expectError(await app.inject({ method: 'GET', url: '/v1/users/me/orders?page=2', headers: auth }), 400, 'VALIDATION_FAILED');
    expect(unknown.message).toMatch(/^querystring\.page /);
  });
});

describe('server errors', () => {
  const INTERNAL_ERROR = { statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: 'Internal Server Error' };

  it('when a replay points at an order that cannot be found, then 500 with the generic error body and no internals', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 5 }]);
    const user = newUser();
    const created = expectCreated(await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'lost' }));
    // Lose the order record behind the key (as if Redis had evicted it before it reached Postgres).
    await redis.del(orderKeyOf(ctx.config.redis.prefix, created.orderId) ?? '');
    const res = await order(saleId, { sku: 'a', quantity: 1 }, { user, key: 'lost' });
    expectError(res, 500, 'INTERNAL');
    expect(res.json<ErrorJson>()).toEqual(INTERNAL_ERROR);
    expect(res.body).not.toContain(created.orderId);
    expect(await available(saleId, 'a')).toBe(4);
  });

  it('when the Lua script fails on a corrupt item record, then 500 without the Redis error text', async () => {
    const saleId = await createSale([{ sku: 'a', stock: 5 }]);
    await redis.hset(shardKeys(ctx.config.redis.prefix, saleId, 'a', 0).item, 'perUserLimit', 'not-a-number');
    const res = await order(saleId, { sku: 'a', quantity: 1 }, { user: newUser() });
    expectError(res, 500, 'INTERNAL');
    // Exactly the generic body: no Redis error text, script line or stack.
    expect(res.json<ErrorJson>()).toEqual(INTERNAL_ERROR);
  });
});

describe('unknown routes', () => {
  it('when the route does not exist, then 404 in the error shape with x-request-id', async () => {
    expectError(await app.inject({ method: 'GET', url: '/v1/nothing-here' }), 404, 'NOT_FOUND');
  });
});
