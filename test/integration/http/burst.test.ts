// A flash-sale rush through real HTTP (node:http, keep-alive, many requests in flight) against
// real Redis and Postgres: ~3,000 attempts from 800 shoppers on two SKUs, with duplicate
// Idempotency-Keys fired concurrently and quantities 1–3. Every response is recorded, then
// DESIGN.md's invariants 1 (no oversell), 2 (per-user limit) and 6 (delist holds) are checked
// against the responses and against Redis, along with idempotent replays and "no 5xx".
import http from 'node:http';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../../src/http/app.ts';
import { shardZeroKeys } from '../../support/sale-state.ts';
import { saleBody, testApi, type Tokens } from '../../support/api.ts';
import type { ErrorJson, OrderJson } from '../../support/api-json.ts';
import type { TestContext } from '../../support/context.ts';

/** One logical attempt: a shopper's order, sent once or (with a key) 2–3 times at once. */
interface Attempt {
  readonly index: number;
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly key: string | undefined;
  readonly copies: number;
}

interface Outcome {
  readonly attempt: Attempt;
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

const SEED = 0x11_11_2025;
const USERS = 800;
const TARGET_REQUESTS = 3_000;
const MAX_SOCKETS = 200;
const UNIT_PRICE = 9_900;
const ITEMS = {
  hot: { sku: 'phone-x', stock: 300, perUserLimit: 2, lowUnits: 30 },
  scarce: { sku: 'gpu-5090', stock: 50, perUserLimit: 1 },
} as const;

const api = testApi();

let ctx: TestContext;
let app: App;
let redis: Redis;
let tk: Tokens;
let port: number;

beforeAll(async () => {
  ({ ctx, app, redis, tk, port } = await api.open());
});

afterAll(() => api.close());

/** mulberry32: a small seeded PRNG, so a failing rush can be replayed exactly. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function planAttempts(random: () => number): Attempt[] {
  const attempts: Attempt[] = [];
  let requests = 0;
  while (requests < TARGET_REQUESTS) {
    const index = attempts.length;
    const roll = random();
    // 30 %: keyed and sent 2–3 times at once; 30 %: keyed once; 40 %: no key.
    const key = roll < 0.6 ? `checkout-${index}` : undefined;
    const copies = roll < 0.3 ? 2 + Math.floor(random() * 2) : 1;
    attempts.push({
      index,
      // Every shopper shows up at least once; after that, at random (some try many times).
      userId: `shopper-${index < USERS ? index : Math.floor(random() * USERS)}`,
      sku: random() < 0.6 ? ITEMS.hot.sku : ITEMS.scarce.sku,
      quantity: 1 + Math.floor(random() * 3),
      key,
      copies,
    });
    requests += copies;
  }
  return attempts;
}

function send(agent: http.Agent, path: string, headers: Record<string, string>, body: string): Promise<Omit<Outcome, 'attempt'>> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

const sum = (values: Iterable<number>) => [...values].reduce((a, b) => a + b, 0);
const parse = <T>(outcome: Outcome): T => JSON.parse(outcome.body) as T;

describe('a flash-sale rush through real HTTP', () => {
  it('when ~3,000 attempts from 800 shoppers hit two SKUs at once, then no oversell, no one over the limit, the delist holds, replays agree and nothing fails', async () => {
    // ---- the sale ---------------------------------------------------------------------------
    const body = saleBody([
      { sku: ITEMS.hot.sku, stock: ITEMS.hot.stock, perUserLimit: ITEMS.hot.perUserLimit, unitPrice: UNIT_PRICE, lowStock: { units: ITEMS.hot.lowUnits } },
      { sku: ITEMS.scarce.sku, stock: ITEMS.scarce.stock, perUserLimit: ITEMS.scarce.perUserLimit, unitPrice: UNIT_PRICE },
    ]);
    const created = await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: tk.admin() }, payload: body });
    expect(created.statusCode, created.body).toBe(201);
    const saleId = body.id;
    // Both items have K = 1: each lives on its shard 0.
    const keys = shardZeroKeys(ctx.config.redis.prefix, saleId);
    const outboxOf = (sku: string) => shardZeroKeys(ctx.config.redis.prefix, saleId, sku).outbox;

    // ---- the rush ---------------------------------------------------------------------------
    const attempts = planAttempts(prng(SEED));
    const authorization = new Map<string, string>();
    for (const attempt of attempts) if (!authorization.has(attempt.userId)) authorization.set(attempt.userId, tk.shopper(attempt.userId));
    const agent = new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
    const started = performance.now();
    let outcomes: Outcome[];
    try {
      const perAttempt = await Promise.all(
        attempts.map((attempt) => {
          const headers: Record<string, string> = { authorization: authorization.get(attempt.userId) ?? '' };
          if (attempt.key !== undefined) headers['idempotency-key'] = attempt.key;
          const payload = JSON.stringify({ sku: attempt.sku, quantity: attempt.quantity });
          // The copies of a keyed attempt leave together: same user, same key, same body.
          return Promise.all(
            Array.from({ length: attempt.copies }, async () => ({ attempt, ...(await send(agent, `/v1/sales/${saleId}/orders`, headers, payload)) })),
          );
        }),
      );
      outcomes = perAttempt.flat();
    } finally {
      agent.destroy();
    }
    const elapsedMs = performance.now() - started;

    // ---- tally ------------------------------------------------------------------------------
    const byStatus = new Map<number, number>();
    const byCode = new Map<string, number>();
    const codesBySku = new Map<string, Set<string>>();
    const orders = new Map<string, { order: OrderJson; attempt: Attempt }>();
    let replays = 0;
    for (const outcome of outcomes) {
      byStatus.set(outcome.status, (byStatus.get(outcome.status) ?? 0) + 1);
      if (outcome.status === 201) {
        const order = parse<OrderJson>(outcome);
        if (outcome.headers['idempotent-replayed'] === 'true') replays++;
        const known = orders.get(order.orderId);
        if (known) expect(order).toEqual(known.order);
        else orders.set(order.orderId, { order, attempt: outcome.attempt });
      } else if (outcome.status < 500) {
        const { code } = parse<ErrorJson>(outcome);
        byCode.set(code, (byCode.get(code) ?? 0) + 1);
        const codes = codesBySku.get(outcome.attempt.sku) ?? new Set<string>();
        codes.add(code);
        codesBySku.set(outcome.attempt.sku, codes);
      }
    }
    const unitsBySku = new Map<string, number>();
    const unitsByUserSku = new Map<string, number>();
    for (const { order } of orders.values()) {
      unitsBySku.set(order.sku, (unitsBySku.get(order.sku) ?? 0) + order.quantity);
      const userSku = `${order.userId}\u0000${order.sku}`;
      unitsByUserSku.set(userSku, (unitsByUserSku.get(userSku) ?? 0) + order.quantity);
    }
    const hotUnits = unitsBySku.get(ITEMS.hot.sku) ?? 0;
    const scarceUnits = unitsBySku.get(ITEMS.scarce.sku) ?? 0;
    const hotAvailable = Number(await redis.hget(keys.item(ITEMS.hot.sku), 'available'));
    const scarceAvailable = Number(await redis.hget(keys.item(ITEMS.scarce.sku), 'available'));
    const refused = [...byCode.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([code, n]) => `${code}=${n}`).join(' ');
    console.log(
      `burst: ${outcomes.length} requests (${attempts.length} attempts, ${attempts.filter((a) => a.copies > 1).length} sent 2-3x with one key) ` +
        `from ${authorization.size} users in ${Math.round(elapsedMs)} ms (${Math.round(outcomes.length / (elapsedMs / 1000))} req/s); ` +
        `201: ${byStatus.get(201) ?? 0} (${orders.size} orders + ${replays} replays); refused: ${refused}; ` +
        `${ITEMS.hot.sku}: ${hotUnits}/${ITEMS.hot.stock} units sold, available ${hotAvailable} (low-stock level ${ITEMS.hot.lowUnits}); ` +
        `${ITEMS.scarce.sku}: ${scarceUnits}/${ITEMS.scarce.stock} sold, available ${scarceAvailable}; ` +
        `statuses ${JSON.stringify(Object.fromEntries(byStatus))}`,
    );

    // ---- every response is well formed, none failed -----------------------------------------
    expect(outcomes).toHaveLength(sum(attempts.map((a) => a.copies)));
    expect([...byStatus.keys()].filter((status) => status >= 500), 'no 5xx').toEqual([]);
    expect([...byStatus.keys()].sort(), 'only 201 and 409 (no 422/429/503)').toEqual([201, 409]);
    const requestIds = outcomes.map((o) => o.headers['x-request-id']);
    expect(requestIds.every((id) => typeof id === 'string' && id.length > 0), 'x-request-id on every response').toBe(true);
    expect(new Set(requestIds).size).toBe(outcomes.length);
    for (const outcome of outcomes.filter((o) => o.status === 201)) {
      const order = parse<OrderJson>(outcome);
      const { attempt } = outcome;
      expect(order).toMatchObject({ saleId, sku: attempt.sku, userId: attempt.userId, quantity: attempt.quantity, unitPrice: UNIT_PRICE, status: 'pending_payment' });
      expect(order.amount).toBe(UNIT_PRICE * attempt.quantity);
      expect(outcome.headers.location).toBe(`/v1/orders/${order.orderId}`);
    }

    // ---- idempotency: each attempt made at most one order, its copies replayed it ------------
    const outcomesByAttempt = new Map<number, Outcome[]>();
    for (const outcome of outcomes) outcomesByAttempt.set(outcome.attempt.index, [...(outcomesByAttempt.get(outcome.attempt.index) ?? []), outcome]);
    let duplicateGroupsAccepted = 0;
    for (const group of outcomesByAttempt.values()) {
      const accepted = group.filter((o) => o.status === 201);
      const attempt = group[0]?.attempt;
      if (!attempt?.key) {
        expect(accepted.every((o) => o.headers['idempotent-replayed'] === undefined), 'no replay without a key').toBe(true);
        continue;
      }
      // Stock, limits and the delist only ever tighten during the rush, so a copy cannot be
      // refused before its key's order was made and then see it made: all or nothing.
      expect(accepted.length === 0 || accepted.length === group.length, `attempt ${attempt.index}: ${group.map((o) => o.status).join(',')}`).toBe(true);
      if (accepted.length === 0) continue;
      const ids = new Set(accepted.map((o) => parse<OrderJson>(o).orderId));
      expect(ids.size, `attempt ${attempt.index} made one order`).toBe(1);
      expect(accepted.filter((o) => o.headers['idempotent-replayed'] === undefined), 'exactly one original').toHaveLength(1);
      expect(accepted.filter((o) => o.headers['idempotent-replayed'] === 'true')).toHaveLength(group.length - 1);
      expect(new Set(accepted.map((o) => o.body)).size, 'replays carry the same body').toBe(1);
      if (group.length > 1) duplicateGroupsAccepted++;
    }
    expect(duplicateGroupsAccepted, 'some duplicate-key attempts were accepted and replayed').toBeGreaterThan(0);
    expect(replays).toBe(sum([...outcomesByAttempt.values()].map((g) => (g[0]?.status === 201 ? g.length - 1 : 0))));

    // ---- invariant 1: no oversell, and Redis agrees with the 201s -----------------------------
    expect(hotUnits).toBeLessThanOrEqual(ITEMS.hot.stock);
    expect(scarceUnits).toBeLessThanOrEqual(ITEMS.scarce.stock);
    expect(hotAvailable).toBe(ITEMS.hot.stock - hotUnits);
    expect(scarceAvailable).toBe(ITEMS.scarce.stock - scarceUnits);
    expect(Math.min(hotAvailable, scarceAvailable)).toBeGreaterThanOrEqual(0);
    // Demand far exceeds the scarce item: it sells out exactly.
    expect(scarceUnits).toBe(ITEMS.scarce.stock);
    expect(codesBySku.get(ITEMS.scarce.sku)?.has('SOLD_OUT')).toBe(true);
    expect([...(codesBySku.get(ITEMS.scarce.sku) ?? [])].every((code) => ['SOLD_OUT', 'INSUFFICIENT_STOCK', 'PER_USER_LIMIT_EXCEEDED'].includes(code))).toBe(true);
    // Each 201 is one outbox entry, and each outbox entry answers a 201.
    const outbox = [...(await redis.xrange(outboxOf(ITEMS.hot.sku), '-', '+')), ...(await redis.xrange(outboxOf(ITEMS.scarce.sku), '-', '+'))];
    const outboxIds = outbox.map(([, fields]) => fields[fields.indexOf('id') + 1]);
    expect(outboxIds.length).toBe(orders.size);
    expect(new Set(outboxIds)).toEqual(new Set(orders.keys()));

    // ---- invariant 2: per-user limit, in the responses and in Redis --------------------------
    const limits = new Map<string, number>([
      [ITEMS.hot.sku, ITEMS.hot.perUserLimit],
      [ITEMS.scarce.sku, ITEMS.scarce.perUserLimit],
    ]);
    for (const [userSku, units] of unitsByUserSku) {
      const sku = userSku.split('\u0000')[1] ?? '';
      expect(units, userSku).toBeLessThanOrEqual(limits.get(sku) ?? 0);
    }
    for (const sku of limits.keys()) {
      const live = await redis.hgetall(keys.users(sku));
      const expected = Object.fromEntries([...unitsByUserSku].filter(([k]) => k.endsWith(`\u0000${sku}`)).map(([k, n]) => [k.split('\u0000')[0], String(n)]));
      expect(live, `live quantities of ${sku}`).toEqual(expected);
    }
    expect(byCode.get('PER_USER_LIMIT_EXCEEDED') ?? 0).toBeGreaterThan(0);

    // ---- invariant 6: the low-stock delist holds ----------------------------------------------
    // The order that took stock to the level (30) was accepted; none after it. Per-user limit 2
    // caps a quantity at 2, so the last accepted order left 28–30 units.
    expect(hotAvailable).toBeLessThanOrEqual(ITEMS.hot.lowUnits);
    expect(hotAvailable).toBeGreaterThan(ITEMS.hot.lowUnits - ITEMS.hot.perUserLimit - 1);
    expect(await redis.hget(keys.item(ITEMS.hot.sku), 'delisted')).toBe('low_stock');
    expect(codesBySku.get(ITEMS.hot.sku)?.has('ITEM_DELISTED')).toBe(true);
    expect([...(codesBySku.get(ITEMS.hot.sku) ?? [])].every((code) => ['ITEM_DELISTED', 'PER_USER_LIMIT_EXCEEDED'].includes(code))).toBe(true);
    // Later attempts — new shoppers, keyed or not, any quantity — are all refused.
    const later = await Promise.all(
      [1, 2, 1, 1].map((quantity, i) =>
        app.inject({
          method: 'POST',
          url: `/v1/sales/${saleId}/orders`,
          headers: { authorization: tk.shopper(`latecomer-${i}`), ...(i % 2 === 0 && { 'idempotency-key': `late-${i}` }) },
          payload: { sku: ITEMS.hot.sku, quantity },
        }),
      ),
    );
    expect(later.map((res) => [res.statusCode, res.json<ErrorJson>().code])).toEqual(later.map(() => [409, 'ITEM_DELISTED']));
    expect(Number(await redis.hget(keys.item(ITEMS.hot.sku), 'available'))).toBe(hotAvailable);

    // ---- read-your-writes: every accepted order is readable by its owner ----------------------
    const reads = await Promise.all(
      [...orders.values()].map(({ order }) => app.inject({ method: 'GET', url: `/v1/orders/${order.orderId}`, headers: { authorization: tk.shopper(order.userId) } })),
    );
    expect(reads.filter((res) => res.statusCode !== 200).map((res) => res.body)).toEqual([]);
    expect(reads.map((res) => res.json<OrderJson>())).toEqual([...orders.values()].map(({ order }) => order));

    // ---- the public view catches up within a second -------------------------------------------
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const view = await app.inject({ method: 'GET', url: `/v1/sales/${saleId}` });
    const items = new Map(view.json<{ items: { sku: string; available: number; state: string }[] }>().items.map((item) => [item.sku, item]));
    expect(items.get(ITEMS.hot.sku)).toMatchObject({ available: hotAvailable, state: 'delisted' });
    expect(items.get(ITEMS.scarce.sku)).toMatchObject({ available: 0, state: 'sold_out' });
  });
});
