// A create that finds the sale id taken finishes a load cut short (no anchor yet), and nothing
// else: a sale without an anchor that has already lived (closed, or loaded under layout 1, or
// whose Redis state was lost) must not be loaded again from its definition, which would reopen
// it with its initial stock. Real Redis and Postgres through the HTTP API.
import type pg from 'pg';
import { uuidv7 } from 'uuidv7';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { anchorKey } from '../../../src/stock/keys.ts';
import { testApi, type OpenApi } from '../../support/api.ts';

const api = testApi({ db: true });
let opened: OpenApi<pg.Client>;

beforeAll(async () => {
  opened = await api.open();
});
afterAll(() => api.close());

/** Deletes every key of the sale (anchor, shards, orders): a sale Redis does not hold in layout 2. */
async function forgetInRedis(saleId: string): Promise<void> {
  const keys = Object.keys(await api.snapshot(saleId));
  expect(keys).toContain(anchorKey(opened.ctx.prefix, saleId));
  await opened.redis.del(...keys);
}

it('when a closed sale has no anchor in Redis and its create is sent again, then the answer is 409 and the sale is not loaded again (it stays closed, no stock comes back)', async () => {
  const { app, tk, redis, ctx } = opened;
  const body = await api.createSale([{ sku: 'phone-x', stock: 5 }]);
  const closed = await app.inject({ method: 'POST', url: `/v1/admin/sales/${body.id}/close`, headers: { authorization: tk.admin() } });
  expect(closed.statusCode, closed.body).toBe(200);
  await forgetInRedis(body.id);

  const again = await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: tk.admin() }, payload: body });
  expect(again.statusCode).toBe(409);
  expect(again.json()).toMatchObject({ code: 'SALE_EXISTS' });

  expect(await redis.exists(anchorKey(ctx.prefix, body.id))).toBe(0);
  const order = await app.inject({ method: 'POST', url: `/v1/sales/${body.id}/orders`, headers: { authorization: tk.shopper('late') }, payload: { sku: 'phone-x', quantity: 1 } });
  expect(order.statusCode).not.toBe(201);
});

it('when a create was cut short before its anchor (shards loaded, no anchor) and is sent again, then the answer is 409 and the sale is finished and sells', async () => {
  const { app, tk, redis, ctx } = opened;
  const body = await api.createSale([{ sku: 'phone-x', stock: 5 }]);
  await redis.del(anchorKey(ctx.prefix, body.id));
  const before = await app.inject({ method: 'POST', url: `/v1/sales/${body.id}/orders`, headers: { authorization: tk.shopper('early') }, payload: { sku: 'phone-x', quantity: 1 } });
  expect(before.statusCode).toBe(404);

  const again = await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: tk.admin() }, payload: body });
  expect(again.statusCode).toBe(409);
  expect(await redis.exists(anchorKey(ctx.prefix, body.id))).toBe(1);
  const order = await app.inject({ method: 'POST', url: `/v1/sales/${body.id}/orders`, headers: { authorization: tk.shopper('on-time') }, payload: { sku: 'phone-x', quantity: 1 } });
  expect(order.statusCode, order.body).toBe(201);
});

it('when a sale with an order in Postgres (never closed) has no anchor in Redis and its create is sent again, then the answer is 409 and the sale is not loaded again', async () => {
  const { app, tk, redis, ctx, db } = opened;
  const body = await api.createSale([{ sku: 'phone-x', stock: 5 }]);
  const now = new Date();
  await db.query(
    `INSERT INTO orders (id, sale_id, sku, user_id, quantity, unit_price, amount, status, created_at, expires_at)
     VALUES ($1, $2, 'phone-x', 'early', 1, 399900, 399900, 'pending_payment', $3, $4)`,
    [uuidv7(), body.id, now, new Date(now.getTime() + 900_000)],
  );
  await forgetInRedis(body.id);

  const again = await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: tk.admin() }, payload: body });
  expect(again.statusCode).toBe(409);
  expect(await redis.exists(anchorKey(ctx.prefix, body.id))).toBe(0);
});
