// The operator routes of the HTTP contract (API.md) through app.inject against real Redis and
// Postgres: create, list, close, delist, relist and restock — their bodies, their refusals, what
// they leave in Postgres (sales, sale_items) and in Redis, and that only operators may call them.
import { STATUS_CODES } from 'node:http';
import type { Redis } from 'ioredis';
import type { LightMyRequestResponse } from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/http/app.ts';
import type { SaleItemRow, SaleRow } from '../../../src/sales/repository.ts';
import { anchorKey, shardKeys, shardTag, tagHex } from '../../../src/stock/keys.ts';
import { saleBody, testApi, tokens, type Tokens } from '../../support/api.ts';
import type { TestContext } from '../../support/context.ts';
import type { ErrorJson, SaleJson } from '../../support/api-json.ts';

interface SwitchJson {
  saleId: string;
  sku: string;
  available: number;
  state: string;
}

const HOUR_MS = 3_600_000;

const api = testApi({ db: true });
const { createSale, itemHash, available } = api;

let ctx: TestContext;
let app: App;
let redis: Redis;
let db: pg.Client;
let tk: Tokens;

beforeAll(async () => {
  ({ ctx, app, redis, db, tk } = await api.open());
});

afterAll(() => api.close());

let userCounter = 0;
const newUser = () => `admin-test-user-${++userCounter}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function post(url: string, payload?: unknown, authorization: string | null = tk.admin()): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url,
    headers: authorization === null ? {} : { authorization },
    ...(payload !== undefined && { payload: payload as Record<string, unknown> }),
  });
}

function order(saleId: string, sku: string, quantity: number, user = newUser(), key?: string): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: `/v1/sales/${saleId}/orders`,
    headers: { authorization: tk.shopper(user), ...(key !== undefined && { 'idempotency-key': key }) },
    payload: { sku, quantity },
  });
}

function expectError(res: LightMyRequestResponse, statusCode: number, code: string): ErrorJson {
  expect(res.statusCode, res.body).toBe(statusCode);
  const body = res.json<ErrorJson>();
  expect(Object.keys(body).sort()).toEqual(['code', 'error', 'message', 'statusCode']);
  expect(body).toMatchObject({ statusCode, code, error: STATUS_CODES[statusCode] });
  expect(body.message.length).toBeGreaterThan(0);
  expect(typeof res.headers['x-request-id']).toBe('string');
  return body;
}

function expectSwitch(res: LightMyRequestResponse): SwitchJson {
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json<SwitchJson>();
  expect(Object.keys(body).sort()).toEqual(['available', 'saleId', 'sku', 'state']);
  return body;
}

async function saleRow(id: string): Promise<SaleRow | undefined> {
  return (await db.query<SaleRow>('SELECT * FROM sales WHERE id = $1', [id])).rows[0];
}

async function itemRows(saleId: string): Promise<SaleItemRow[]> {
  return (await db.query<SaleItemRow>('SELECT * FROM sale_items WHERE sale_id = $1 ORDER BY sku', [saleId])).rows;
}

async function saleExistsAnywhere(saleId: string): Promise<boolean> {
  const inRedis = (await redis.exists(anchorKey(ctx.config.redis.prefix, saleId))) === 1;
  return inRedis || (await saleRow(saleId)) !== undefined;
}

async function getSale(saleId: string): Promise<SaleJson> {
  const res = await app.inject({ method: 'GET', url: `/v1/sales/${saleId}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<SaleJson>();
}

const withoutServerTime = ({ serverTime: _serverTime, ...rest }: SaleJson) => rest;

describe('POST /v1/admin/sales', () => {
  it('when an operator creates a sale, then 201 returns it as GET /v1/sales/:id shows it', async () => {
    const body = saleBody(
      [
        { sku: 'phone-x', stock: 1000, perUserLimit: 2, unitPrice: 399_900, lowStock: { percent: 20 } },
        { sku: 'case.y_2', stock: 50, perUserLimit: 1, unitPrice: 1_990, lowStock: { units: 5 } },
        { sku: 'cable', stock: 0, perUserLimit: 3, unitPrice: 0 },
      ],
      { name: 'Singles Day', currency: 'USD' },
    );
    const res = await post('/v1/admin/sales', body);
    expect(res.statusCode, res.body).toBe(201);
    expect(typeof res.headers['x-request-id']).toBe('string');
    const created = res.json<SaleJson>();
    expect(created).toMatchObject({ id: body.id, name: 'Singles Day', status: 'active', startsAt: body.startsAt, endsAt: body.endsAt, currency: 'USD' });
    expect(created.items.map((item) => [item.sku, item.available, item.state, item.unitPrice, item.perUserLimit, item.name]).sort()).toEqual(
      [
        ['cable', 0, 'sold_out', 0, 3, 'Item cable'],
        ['case.y_2', 50, 'listed', 1_990, 1, 'Item case.y_2'],
        ['phone-x', 1000, 'listed', 399_900, 2, 'Item phone-x'],
      ].sort(),
    );
    expect(withoutServerTime(await getSale(body.id))).toEqual(withoutServerTime(created));
  });

  it('when a sale is created, then Postgres holds it in sales and sale_items with its low-stock rules', async () => {
    const body = await createSale(
      [
        { sku: 'a', stock: 100, perUserLimit: 2, unitPrice: 12_345, lowStock: { percent: 12.5 } },
        { sku: 'b', stock: 7, perUserLimit: 1, unitPrice: 10_000_000_000, lowStock: { units: 3 } },
        { sku: 'c', stock: 0, perUserLimit: 4 },
      ],
      { paymentWindowSeconds: 120 },
    );
    const sale = await saleRow(body.id);
    expect(sale).toMatchObject({ id: body.id, name: 'Double 11', currency: 'CNY', payment_window_seconds: 120, closed_at: null });
    expect(sale?.starts_at.toISOString()).toBe(body.startsAt);
    expect(sale?.ends_at.toISOString()).toBe(body.endsAt);
    const items = await itemRows(body.id);
    expect(items.map((row) => ({ ...row, low_stock_percent: row.low_stock_percent === null ? null : Number(row.low_stock_percent) }))).toEqual([
      expect.objectContaining({ sku: 'a', name: 'Item a', unit_price: '12345', initial_stock: 100, restocked: 0, per_user_limit: 2, low_stock_percent: 12.5, low_stock_units: null }),
      expect.objectContaining({ sku: 'b', unit_price: '10000000000', initial_stock: 7, restocked: 0, per_user_limit: 1, low_stock_percent: null, low_stock_units: 3 }),
      expect.objectContaining({ sku: 'c', initial_stock: 0, restocked: 0, per_user_limit: 4, low_stock_percent: null, low_stock_units: null }),
    ]);
  });

  it('when items name stockShards (or not), then Postgres stores K (default 1), shoppers see only the total, and the report lists every shard', async () => {
    const body = await createSale([
      { sku: 'hot', stock: 45, perUserLimit: 3, stockShards: 4, lowStock: { units: 5 } },
      { sku: 'plain', stock: 7, perUserLimit: 3 },
    ]);
    expect((await itemRows(body.id)).map((row) => [row.sku, row.stock_shards])).toEqual([
      ['hot', 4],
      ['plain', 1],
    ]);
    // The total left: 40 on sale over four shards, 5 held at the low-stock level.
    const sale = await getSale(body.id);
    expect(sale.items.map((item) => [item.sku, item.available, item.state])).toEqual([
      ['hot', 45, 'listed'],
      ['plain', 7, 'listed'],
    ]);
    expect(JSON.stringify(sale)).not.toContain('shard');

    const report = await app.inject({ method: 'GET', url: `/v1/admin/sales/${body.id}/report`, headers: { authorization: tk.admin() } });
    expect(report.statusCode, report.body).toBe(200);
    const items = report.json<{ items: { sku: string; available: number; shards: { k: number; tag: string; available: number; outPending: number; ordersAccepted: number; liveUsers: number }[] }[] }>().items;
    const hot = items.find((item) => item.sku === 'hot');
    expect(hot?.available).toBe(45);
    expect(hot?.shards.map((shard) => [shard.k, shard.tag, shard.available, shard.outPending, shard.ordersAccepted, shard.liveUsers])).toEqual(
      [0, 1, 2, 3].map((k) => [k, tagHex(shardTag(body.id, 'hot', k)), 10, 0, 0, 0]),
    );
    expect(items.find((item) => item.sku === 'plain')?.shards).toHaveLength(1);
  });

  it('when paymentWindowSeconds is omitted, then orders get the default 900 s window', async () => {
    const body = saleBody([{ sku: 'a', stock: 5 }]);
    const { paymentWindowSeconds: _omitted, ...withoutWindow } = body;
    const res = await post('/v1/admin/sales', withoutWindow);
    expect(res.statusCode, res.body).toBe(201);
    expect((await saleRow(body.id))?.payment_window_seconds).toBe(900);
    const placed = await order(body.id, 'a', 1);
    expect(placed.statusCode, placed.body).toBe(201);
    const { createdAt, expiresAt } = placed.json<{ createdAt: string; expiresAt: string }>();
    expect(Date.parse(expiresAt) - Date.parse(createdAt)).toBe(900_000);
  });

  it('when the sale id is taken, then 409 SALE_EXISTS and neither Postgres nor Redis changes', async () => {
    const body = await createSale([{ sku: 'a', stock: 10, perUserLimit: 5 }]);
    expect((await order(body.id, 'a', 3)).statusCode).toBe(201);
    const again = saleBody([{ sku: 'a', stock: 999 }, { sku: 'new-sku', stock: 1 }], { id: body.id, name: 'Impostor' });
    expectError(await post('/v1/admin/sales', again), 409, 'SALE_EXISTS');
    expect((await saleRow(body.id))?.name).toBe('Double 11');
    expect((await itemRows(body.id)).map((row) => [row.sku, row.initial_stock])).toEqual([['a', 10]]);
    expect(await available(body.id, 'a')).toBe(7);
    expect(await redis.exists(shardKeys(ctx.config.redis.prefix, body.id, 'new-sku', 0).item)).toBe(0);
  });

  it('when a sale has 1,000 items (the maximum), then 201', async () => {
    const items = Array.from({ length: 1000 }, (_, i) => ({ sku: `s${i}`, stock: 1 }));
    const body = saleBody(items);
    const res = await post('/v1/admin/sales', body);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json<SaleJson>().items).toHaveLength(1000);
    expect((await itemRows(body.id)).length).toBe(1000);
  });

  const now = Date.now();
  const at = (offsetMs: number) => new Date(now + offsetMs).toISOString();
  const invalid: [string, () => Record<string, unknown>, RegExp][] = [
    ['endsAt equals startsAt', () => saleBody([{ sku: 'a', stock: 1 }], { startsAt: at(0), endsAt: at(0) }), /^body\.endsAt /],
    ['endsAt is before startsAt', () => saleBody([{ sku: 'a', stock: 1 }], { startsAt: at(HOUR_MS), endsAt: at(-HOUR_MS) }), /^body\.endsAt /],
    ['an item has stock < 0', () => saleBody([{ sku: 'a', stock: -1 }]), /^body\.items\.0\.stock /],
    ['an item has perUserLimit 0', () => saleBody([{ sku: 'a', stock: 1, perUserLimit: 0 }]), /^body\.items\.0\.perUserLimit /],
    ['two items share a SKU', () => saleBody([{ sku: 'a', stock: 1 }, { sku: 'b', stock: 1 }, { sku: 'a', stock: 2 }]), /^body\.items\.2\.sku /],
    ['there are no items', () => saleBody([]), /^body\.items /],
    ['there are 1,001 items', () => saleBody(Array.from({ length: 1001 }, (_, i) => ({ sku: `s${i}`, stock: 1 }))), /^body\.items /],
    ['lowStock percent is over 100', () => saleBody([{ sku: 'a', stock: 10, lowStock: { percent: 101 } }]), /^body\.items\.0\.lowStock/],
    ['lowStock percent is negative', () => saleBody([{ sku: 'a', stock: 10, lowStock: { percent: -1 } }]), /^body\.items\.0\.lowStock/],
    ['lowStock gives both percent and units', () => {
      const body = saleBody([{ sku: 'a', stock: 10 }]);
      return { ...body, items: body.items.map((item) => ({ ...item, lowStock: { percent: 10, units: 1 } })) };
    }, /^body\.items\.0\.lowStock/],
    ['the sale id does not match the id pattern', () => saleBody([{ sku: 'a', stock: 1 }], { id: 'bad id!' }), /^body\.id /],
    ['a SKU does not match the id pattern', () => saleBody([{ sku: '.dot-first', stock: 1 }]), /^body\.items\.0\.sku /],
    ['startsAt is not a date-time', () => saleBody([{ sku: 'a', stock: 1 }], { startsAt: 'tomorrow' }), /^body\.startsAt /],
    ['the currency is not three capitals', () => saleBody([{ sku: 'a', stock: 1 }], { currency: 'yuan' }), /^body\.currency /],
    ['stock is a string', () => {
      const body = saleBody([{ sku: 'a', stock: 1 }]);
      return { ...body, items: body.items.map((item) => ({ ...item, stock: '5' })) };
    }, /^body\.items\.0\.stock /],
    ['an item has 0 stock shards', () => saleBody([{ sku: 'a', stock: 1, stockShards: 0 }]), /^body\.items\.0\.stockShards /],
    ['an item has 65 stock shards', () => saleBody([{ sku: 'a', stock: 1, stockShards: 65 }]), /^body\.items\.0\.stockShards /],
    ['an item has 1.5 stock shards', () => saleBody([{ sku: 'a', stock: 1, stockShards: 1.5 }]), /^body\.items\.0\.stockShards /],
    ['there is an unknown property', () => saleBody([{ sku: 'a', stock: 1 }], { discount: 50 }), /^body\.discount /],
    ['the name is missing', () => {
      const { name: _name, ...rest } = saleBody([{ sku: 'a', stock: 1 }]);
      return rest;
    }, /^body\.name /],
  ];

  it.each(invalid)('when %s, then 400 VALIDATION_FAILED names the field and nothing is created', async (_label, build, field) => {
    const body = build();
    const res = await post('/v1/admin/sales', body);
    const error = expectError(res, 400, 'VALIDATION_FAILED');
    expect(error.message).toMatch(field);
    if (typeof body.id === 'string') expect(await saleExistsAnywhere(body.id)).toBe(false);
  });
});

describe('GET /v1/admin/sales', () => {
  it('when sales exist, then it lists each with its status', async () => {
    const now = Date.now();
    const scheduled = await createSale([{ sku: 'a', stock: 1 }], { startsAt: new Date(now + HOUR_MS).toISOString(), endsAt: new Date(now + 2 * HOUR_MS).toISOString() });
    const active = await createSale([{ sku: 'a', stock: 1 }]);
    const ended = await createSale([{ sku: 'a', stock: 1 }], { startsAt: new Date(now - 2 * HOUR_MS).toISOString(), endsAt: new Date(now - HOUR_MS).toISOString() });
    const closed = await createSale([{ sku: 'a', stock: 1 }]);
    expect((await post(`/v1/admin/sales/${closed.id}/close`)).statusCode).toBe(200);

    const res = await app.inject({ method: 'GET', url: '/v1/admin/sales', headers: { authorization: tk.admin() } });
    expect(res.statusCode, res.body).toBe(200);
    const { sales } = res.json<{ sales: { id: string; name: string; status: string; startsAt: string; endsAt: string }[] }>();
    const byId = new Map(sales.map((sale) => [sale.id, sale]));
    expect(byId.get(scheduled.id)).toEqual({ id: scheduled.id, name: 'Double 11', status: 'scheduled', startsAt: scheduled.startsAt, endsAt: scheduled.endsAt });
    expect(byId.get(active.id)?.status).toBe('active');
    expect(byId.get(ended.id)?.status).toBe('ended');
    expect(byId.get(closed.id)?.status).toBe('closed');
  });
});

describe('POST /v1/admin/sales/:saleId/close', () => {
  it('when an operator closes an active sale, then 200 shows it closed, Postgres records closed_at, and orders are refused with SALE_ENDED', async () => {
    const body = await createSale([{ sku: 'a', stock: 10 }]);
    const before = Date.now();
    const res = await post(`/v1/admin/sales/${body.id}/close`);
    expect(res.statusCode, res.body).toBe(200);
    const closed = res.json<SaleJson>();
    expect(closed).toMatchObject({ id: body.id, status: 'closed' });
    expect(closed.items[0]).toMatchObject({ sku: 'a', available: 10 });
    const closedAt = (await saleRow(body.id))?.closed_at;
    expect(closedAt).toBeInstanceOf(Date);
    expect(closedAt!.getTime()).toBeGreaterThanOrEqual(before - 1_000);
    expectError(await order(body.id, 'a', 1), 409, 'SALE_ENDED');
    expect(await available(body.id, 'a')).toBe(10);
  });

  it('when a sale is closed twice, then the second close is a 200 no-op that keeps the first closed_at', async () => {
    const body = await createSale([{ sku: 'a', stock: 1 }]);
    expect((await post(`/v1/admin/sales/${body.id}/close`)).statusCode).toBe(200);
    const first = (await saleRow(body.id))?.closed_at?.getTime();
    await sleep(20);
    const again = await post(`/v1/admin/sales/${body.id}/close`);
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json<SaleJson>().status).toBe('closed');
    expect((await saleRow(body.id))?.closed_at?.getTime()).toBe(first);
  });

  it('when the sale is unknown, then 404 SALE_NOT_FOUND', async () => {
    expectError(await post('/v1/admin/sales/no-such-sale/close'), 404, 'SALE_NOT_FOUND');
  });

  it('when a stock shard cannot take the close, then 503 CLOSE_INCOMPLETE, the shards reached carry the closing time, and a retried close carries the same closing time to the rest', async () => {
    const body = await createSale([{ sku: 'hot', stock: 40, perUserLimit: 5, stockShards: 4 }]);
    const prefix = ctx.config.redis.prefix;
    // Shard 3's copy of the sale stands in for an unreachable slot: the script fails on it every time.
    const broken = shardKeys(prefix, body.id, 'hot', 3).sale;
    const copy = await redis.hgetall(broken);
    await redis.del(broken);
    await redis.set(broken, 'not a hash');

    expectError(await post(`/v1/admin/sales/${body.id}/close`), 503, 'CLOSE_INCOMPLETE');
    const closedAt = await redis.hget(anchorKey(prefix, body.id), 'closedAt');
    expect(closedAt).toMatch(/^\d+$/);
    for (const k of [0, 1, 2]) expect(await redis.hget(shardKeys(prefix, body.id, 'hot', k).sale, 'closedAt')).toBe(closedAt);

    // The slot is back: the retry closes it with the first closing time.
    await redis.del(broken);
    await redis.hset(broken, copy);
    await sleep(5);
    const retried = await post(`/v1/admin/sales/${body.id}/close`);
    expect(retried.statusCode, retried.body).toBe(200);
    expect(await redis.hget(broken, 'closedAt')).toBe(closedAt);
    expect((await saleRow(body.id))?.closed_at?.getTime()).toBe(Number(closedAt));
    expectError(await order(body.id, 'hot', 1), 409, 'SALE_ENDED');
  });
});

describe('POST /v1/admin/sales/:saleId/items/:sku/delist and /relist', () => {
  it('when an operator delists an item, then 200 shows it delisted and orders get ITEM_DELISTED', async () => {
    const body = await createSale([{ sku: 'a', stock: 10 }, { sku: 'b', stock: 10 }]);
    const res = expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/delist`));
    expect(res).toEqual({ saleId: body.id, sku: 'a', available: 10, state: 'delisted' });
    expect((await itemHash(body.id, 'a')).delisted).toBe('operator');
    expectError(await order(body.id, 'a', 1), 409, 'ITEM_DELISTED');
    expect((await order(body.id, 'b', 1)).statusCode).toBe(201); // only that item
    expect(await available(body.id, 'a')).toBe(10);
  });

  it('when an operator relists a delisted item, then 200 shows it listed and the very next order is accepted', async () => {
    const body = await createSale([{ sku: 'a', stock: 10 }]);
    expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/delist`));
    expectError(await order(body.id, 'a', 1), 409, 'ITEM_DELISTED');
    const res = expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/relist`));
    expect(res).toEqual({ saleId: body.id, sku: 'a', available: 10, state: 'listed' });
    const next = await order(body.id, 'a', 1);
    expect(next.statusCode, next.body).toBe(201);
    expect(await available(body.id, 'a')).toBe(9);
  });

  it('when an operator relists an item the low-stock rule delisted, then it sells again below the level', async () => {
    const body = await createSale([{ sku: 'a', stock: 10, perUserLimit: 10, lowStock: { units: 5 } }]);
    expect((await order(body.id, 'a', 5)).statusCode).toBe(201);
    expectError(await order(body.id, 'a', 1), 409, 'ITEM_DELISTED');
    expect(expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/relist`)).state).toBe('listed');
    const next = await order(body.id, 'a', 1);
    expect(next.statusCode, next.body).toBe(201);
    expect(await available(body.id, 'a')).toBe(4);
  });

  it('when the sale or the SKU is unknown, then 404 SALE_NOT_FOUND or ITEM_NOT_FOUND', async () => {
    const body = await createSale([{ sku: 'a', stock: 1 }]);
    for (const action of ['delist', 'relist']) {
      expectError(await post(`/v1/admin/sales/no-such-sale/items/a/${action}`), 404, 'SALE_NOT_FOUND');
      expectError(await post(`/v1/admin/sales/${body.id}/items/nope/${action}`), 404, 'ITEM_NOT_FOUND');
    }
    expect(await redis.exists(shardKeys(ctx.config.redis.prefix, body.id, 'nope', 0).item)).toBe(0);
  });
});

describe('POST /v1/admin/sales/:saleId/items/:sku/restock', () => {
  it('when an operator restocks, then available grows, Postgres records restocked, and GET shows the new stock', async () => {
    const body = await createSale([{ sku: 'a', stock: 10 }]);
    expect((await order(body.id, 'a', 2)).statusCode).toBe(201);
    const res = expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/restock`, { quantity: 5 }));
    expect(res).toEqual({ saleId: body.id, sku: 'a', available: 13, state: 'listed' });
    expect(expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/restock`, { quantity: 2 })).available).toBe(15);
    const [row] = await itemRows(body.id);
    expect(row).toMatchObject({ initial_stock: 10, restocked: 7 });
    expect(await itemHash(body.id, 'a')).toMatchObject({ available: '15', total: '17' });
    await sleep(1_100);
    expect((await getSale(body.id)).items[0]).toMatchObject({ available: 15, state: 'listed' });
  });

  it('when a sold-out item is restocked, then the very next order is accepted', async () => {
    const body = await createSale([{ sku: 'a', stock: 1, perUserLimit: 1 }]);
    expect((await order(body.id, 'a', 1)).statusCode).toBe(201);
    expectError(await order(body.id, 'a', 1), 409, 'SOLD_OUT');
    expect(expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/restock`, { quantity: 3 })).state).toBe('listed');
    const next = await order(body.id, 'a', 1);
    expect(next.statusCode, next.body).toBe(201);
    expect(await available(body.id, 'a')).toBe(2);
  });

  it('when a restock lifts a low-stock-delisted item above its level, then it is relisted and sells again', async () => {
    const body = await createSale([{ sku: 'a', stock: 10, perUserLimit: 10, lowStock: { units: 4 } }]);
    expect((await order(body.id, 'a', 6)).statusCode).toBe(201); // 4 left: delisted
    expectError(await order(body.id, 'a', 1), 409, 'ITEM_DELISTED');
    const res = expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/restock`, { quantity: 3 }));
    expect(res).toEqual({ saleId: body.id, sku: 'a', available: 7, state: 'listed' });
    const next = await order(body.id, 'a', 2);
    expect(next.statusCode, next.body).toBe(201);
    // Down to 5, then 4 again: the rule fires again at its level.
    expect((await order(body.id, 'a', 1)).statusCode).toBe(201);
    expect((await itemHash(body.id, 'a')).delisted).toBe('low_stock');
    expectError(await order(body.id, 'a', 1, newUser(), 'keyed'), 409, 'ITEM_DELISTED');
  });

  it('when a restock leaves the item still at or below its low-stock level, then it stays delisted', async () => {
    const body = await createSale([{ sku: 'a', stock: 10, perUserLimit: 10, lowStock: { percent: 50 } }]);
    expect((await order(body.id, 'a', 6)).statusCode).toBe(201); // 4 left ≤ 50 % of 10
    // +1 → 5 of 11: 500 ≤ 550, still at or below half of the grown base.
    const res = expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/restock`, { quantity: 1 }));
    expect(res).toMatchObject({ available: 5, state: 'delisted' });
    expectError(await order(body.id, 'a', 1, newUser(), 'still-low'), 409, 'ITEM_DELISTED');
    // +3 → 8 of 14: 800 > 700, above the level: relisted.
    expect(expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/restock`, { quantity: 3 })).state).toBe('listed');
    expect((await order(body.id, 'a', 1, newUser(), 'now-ok')).statusCode).toBe(201);
  });

  it('when the operator delisted the item, then a restock does not relist it', async () => {
    const body = await createSale([{ sku: 'a', stock: 10 }]);
    expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/delist`));
    const res = expectSwitch(await post(`/v1/admin/sales/${body.id}/items/a/restock`, { quantity: 5 }));
    expect(res).toMatchObject({ available: 15, state: 'delisted' });
    expectError(await order(body.id, 'a', 1, newUser(), 'k'), 409, 'ITEM_DELISTED');
  });

  it.each([
    ['quantity 0', { quantity: 0 }],
    ['a negative quantity', { quantity: -5 }],
    ['quantity as a string', { quantity: '5' }],
    ['a fractional quantity', { quantity: 1.5 }],
    ['no quantity', {}],
    ['an unknown property', { quantity: 1, note: 'x' }],
  ])('when the body has %s, then 400 VALIDATION_FAILED and stock and restocked are unchanged', async (_label, payload) => {
    const body = await createSale([{ sku: 'a', stock: 10 }]);
    const error = expectError(await post(`/v1/admin/sales/${body.id}/items/a/restock`, payload), 400, 'VALIDATION_FAILED');
    expect(error.message).toMatch(/^body\b/);
    expect(await available(body.id, 'a')).toBe(10);
    expect((await itemRows(body.id))[0]?.restocked).toBe(0);
  });

  it('when the sale or the SKU is unknown, then 404 and nothing is recorded', async () => {
    const body = await createSale([{ sku: 'a', stock: 10 }]);
    expectError(await post('/v1/admin/sales/no-such-sale/items/a/restock', { quantity: 1 }), 404, 'SALE_NOT_FOUND');
    expectError(await post(`/v1/admin/sales/${body.id}/items/nope/restock`, { quantity: 1 }), 404, 'ITEM_NOT_FOUND');
    expect((await itemRows(body.id))[0]?.restocked).toBe(0);
    expect(await redis.exists(shardKeys(ctx.config.redis.prefix, body.id, 'nope', 0).item)).toBe(0);
  });
});

describe('operator routes refuse shoppers and anonymous callers', () => {
  let saleId: string;

  beforeAll(async () => {
    saleId = (await createSale([{ sku: 'a', stock: 10 }])).id;
  });

  const routes = (): [string, string, unknown][] => [
    ['POST', '/v1/admin/sales', saleBody([{ sku: 'a', stock: 1 }])],
    ['GET', '/v1/admin/sales', undefined],
    ['POST', `/v1/admin/sales/${saleId}/close`, undefined],
    ['POST', `/v1/admin/sales/${saleId}/items/a/delist`, undefined],
    ['POST', `/v1/admin/sales/${saleId}/items/a/relist`, undefined],
    ['POST', `/v1/admin/sales/${saleId}/items/a/restock`, { quantity: 5 }],
    ['GET', `/v1/admin/sales/${saleId}/report`, undefined],
  ];

  async function expectUntouched(): Promise<void> {
    expect(await itemHash(saleId, 'a')).toMatchObject({ available: '10', total: '10', delisted: '' });
    expect((await saleRow(saleId))?.closed_at).toBeNull();
    expect((await itemRows(saleId))[0]?.restocked).toBe(0);
  }

  it('when a shopper token calls each operator route, then 403 FORBIDDEN and nothing changes', async () => {
    for (const [method, url, payload] of routes()) {
      const res = await app.inject({
        method: method as 'GET' | 'POST',
        url,
        headers: { authorization: tk.shopper('not-an-operator') },
        ...(payload !== undefined && { payload: payload as Record<string, unknown> }),
      });
      expectError(res, 403, 'FORBIDDEN');
    }
    await expectUntouched();
  });

  it('when a token claims another role, then 403 FORBIDDEN', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/admin/sales', headers: { authorization: tk.sign({ sub: 'x', role: 'Admin' }) } });
    expectError(res, 403, 'FORBIDDEN');
  });

  it('when there is no token, a bad one or an expired admin one, then 401 UNAUTHORIZED on each operator route', async () => {
    const expiredAdmin = tk.sign({ sub: 'ops', role: 'admin', exp: Math.floor(Date.now() / 1000) - 60 });
    const forgedAdmin = tokens('another-secret-at-least-16-chars').admin();
    for (const authorization of [undefined, 'Bearer nope', expiredAdmin, forgedAdmin]) {
      for (const [method, url, payload] of routes()) {
        const res = await app.inject({
          method: method as 'GET' | 'POST',
          url,
          headers: authorization === undefined ? {} : { authorization },
          ...(payload !== undefined && { payload: payload as Record<string, unknown> }),
        });
        expectError(res, 401, 'UNAUTHORIZED');
      }
    }
    await expectUntouched();
  });
});
