// Caller-chosen strings (a token's `sub`, an Idempotency-Key) inside Redis key names, through the
// HTTP API: users whose ids hold the key separator, hash-tag braces, spaces or non-ASCII never
// see each other's orders, replays, per-user limits or rate limits.
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/http/app.ts';
import { testApi, type Tokens } from '../../support/api.ts';
import type { OrderJson } from '../../support/api-json.ts';

const api = testApi();
const { available, liveQuantity } = api;

let app: App;
let tk: Tokens;

beforeAll(async () => {
  ({ app, tk } = await api.open());
});

afterAll(() => api.close());

function order(target: App, saleId: string, user: string, key?: string): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { authorization: tk.shopper(user) };
  if (key !== undefined) headers['idempotency-key'] = key;
  return target.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers, payload: { sku: 'a', quantity: 1 } });
}

function created(res: LightMyRequestResponse): OrderJson & { replayed: boolean } {
  expect(res.statusCode, res.body).toBe(201);
  return { ...(res.json() as OrderJson), replayed: res.headers['idempotent-replayed'] === 'true' };
}

describe('idempotency keys of different users', () => {
  // Each pair joins to the same "user:key" text; with the parts unencoded they named one Redis key.
  const pairs: [string, [string, string], [string, string]][] = [
    ['the separator moves from the key into the user id', ['a', 'b:k'], ['a:b', 'k']],
    ['braces and spaces move between the user id and the key', ['用户', '{x} y:k'], ['用户:{x} y', 'k']],
    ['a percent sign could fake an escape', ['p%3Aq', 'k'], ['p:q', 'k']],
  ];

  it.each(pairs)('when %s, then the second user gets an order of their own, not a replay of the first', async (_, [userA, keyA], [userB, keyB]) => {
    const saleId = (await api.createSale([{ sku: 'a', stock: 10, perUserLimit: 2 }])).id;

    const first = created(await order(app, saleId, userA, keyA));
    const second = created(await order(app, saleId, userB, keyB));

    expect(first.replayed).toBe(false);
    expect(second.replayed).toBe(false);
    expect(second.orderId).not.toBe(first.orderId);
    expect(second.userId).toBe(userB);
    expect(await available(saleId, 'a')).toBe(8);
    expect(await liveQuantity(saleId, 'a', userA)).toBe(1);
    expect(await liveQuantity(saleId, 'a', userB)).toBe(1);

    // Each key still replays its own user's order.
    const again = created(await order(app, saleId, userB, keyB));
    expect([again.replayed, again.orderId]).toEqual([true, second.orderId]);
  });
});

describe('per-user limits and order lists of look-alike users', () => {
  it('when users whose ids differ only around ":", "{", "}" and spaces each order up to the limit, then each has their own limit and list', async () => {
    const saleId = (await api.createSale([{ sku: 'a', stock: 20, perUserLimit: 1 }])).id;
    const users = ['用户:{x} y', '用户:{x}', '用户', '{x} y', '用户:%7Bx%7D y'];

    for (const user of users) created(await order(app, saleId, user));
    for (const user of users) {
      const res = await order(app, saleId, user);
      expect(res.statusCode, user).toBe(409);
      expect((res.json() as { code: string }).code).toBe('PER_USER_LIMIT_EXCEEDED');
    }

    for (const user of users) {
      const res = await app.inject({ method: 'GET', url: `/v1/users/me/orders?saleId=${saleId}`, headers: { authorization: tk.shopper(user) } });
      const list = (res.json() as { orders: OrderJson[] }).orders;
      expect(list.map((o) => o.userId), user).toEqual([user]);
    }
  });
});

describe('per-user rate limit of look-alike users', () => {
  const limitedApp = api.apiWith({ RATE_LIMIT_USER_PER_SEC: '2' });

  it('when one user with braces and a separator in their id is rate-limited, then a look-alike user is still served', async () => {
    const saleId = (await api.createSale([{ sku: 'a', stock: 100, perUserLimit: 100 }])).id;

    const burst = await Promise.all(Array.from({ length: 8 }, () => order(limitedApp(), saleId, 'user:{x}')));
    expect(burst.some((res) => res.statusCode === 429)).toBe(true);

    const other = await order(limitedApp(), saleId, '{x}');
    expect(other.statusCode, other.body).toBe(201);
  });
});
