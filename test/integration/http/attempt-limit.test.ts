// The shopper's attempt limit (RATE_LIMIT_USER_PER_SEC) through real HTTP, with two API
// processes' worth of services sharing one Redis: attempts that reach Redis are limited exactly
// across both (counted inside reserveOrder, no round trip of its own), the refused ones take
// nothing, and attempts answered from a process's sold-out memory are limited without Redis; the
// per-IP guard counts in process memory, without Redis.
import { Redis } from 'ioredis';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { saleBody, startTestApi, tokens, type Tokens } from '../../support/api.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';
import { monitorRedis } from '../../support/monitor.ts';
import { saleState } from '../../support/sale-state.ts';

const LIMIT = 5;

let ctx: TestContext;
let redis: Redis;
let tk: Tokens;
let services: RunningService[] = [];
let baseUrls: string[] = [];
const state = saleState(() => ({ redis, prefix: ctx.prefix }));

beforeAll(async () => {
  ctx = await createTestContext();
  redis = new Redis(ctx.redisUrl);
  tk = tokens(ctx.config.jwtSecret);
  services = [await startTestApi(ctx, { RATE_LIMIT_USER_PER_SEC: String(LIMIT) }), await startTestApi(ctx, { RATE_LIMIT_USER_PER_SEC: String(LIMIT) })];
  baseUrls = services.map((service) => `http://127.0.0.1:${(service.app!.server.address() as AddressInfo).port}`);
});

afterAll(async () => {
  await Promise.all(services.map((service) => service.stop()));
  redis.disconnect();
  await ctx.cleanup();
});

async function createSale(stock: number): Promise<string> {
  const body = saleBody([{ sku: 'a', stock, perUserLimit: 1_000 }]);
  const res = await fetch(`${baseUrls[0]}/v1/admin/sales`, { method: 'POST', headers: { authorization: tk.admin(), 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status, await res.text()).toBe(201);
  return body.id;
}

interface Answer {
  readonly status: number;
  readonly code: string | undefined;
  readonly retryAfter: string | null;
}

async function attempt(baseUrl: string, saleId: string, user: string): Promise<Answer> {
  const res = await fetch(`${baseUrl}/v1/sales/${saleId}/orders`, {
    method: 'POST',
    headers: { authorization: tk.shopper(user), 'content-type': 'application/json' },
    body: JSON.stringify({ sku: 'a', quantity: 1 }),
  });
  const body = (await res.json()) as { code?: string };
  return { status: res.status, code: body.code, retryAfter: res.headers.get('retry-after') };
}

/** Waits for the start of a clock second, runs `burst`, and says whether it ended in that second. */
async function withinOneSecond<T>(burst: () => Promise<T>): Promise<{ result: T; oneSecond: boolean }> {
  while (Date.now() % 1000 > 30) await sleep(1);
  const started = Date.now();
  const result = await burst();
  return { result, oneSecond: Math.floor(Date.now() / 1000) === Math.floor(started / 1000) };
}

describe('the attempt limit across two API processes', () => {
  it(`when one shopper fires 40 attempts at once over many connections to two processes, then exactly ${LIMIT} are decided and the rest get 429 with Retry-After, taking nothing`, async () => {
    // A burst that straddles a second boundary is two windows; try again with a fresh sale then.
    for (let tries = 1; ; tries++) {
      const stock = 100;
      const saleId = await createSale(stock);
      const user = `eager-${tries}`;
      const { result: answers, oneSecond } = await withinOneSecond(() =>
        Promise.all(Array.from({ length: 40 }, (_, i) => attempt(baseUrls[i % 2]!, saleId, user))),
      );
      if (!oneSecond && tries < 5) continue;
      expect(oneSecond, 'five bursts in a row straddled a second').toBe(true);

      const created = answers.filter((a) => a.status === 201);
      const refused = answers.filter((a) => a.status !== 201);
      expect(created).toHaveLength(LIMIT);
      for (const answer of refused) expect(answer).toEqual({ status: 429, code: 'RATE_LIMITED', retryAfter: '1' });
      expect(await state.available(saleId, 'a')).toBe(stock - LIMIT);
      expect(await state.liveQuantity(saleId, 'a', user)).toBe(LIMIT);
      expect(await state.outboxLength(saleId)).toBe(LIMIT);

      // The limit is the shopper's own: someone else is served at once, by either process.
      expect((await attempt(baseUrls[1]!, saleId, `calm-${tries}`)).status).toBe(201);
      return;
    }
  });

  it(`when an item is known sold out, then a shopper gets ${LIMIT} answers from memory and 429s after them, without one Redis command`, async () => {
    // Anything this test's services send names a key of its namespace.
    const monitor = await monitorRedis(ctx.redisUrl, ctx.prefix);
    try {
      for (let tries = 1; ; tries++) {
        const saleId = await createSale(1);
        const user = `late-${tries}`;
        const { result: answers, oneSecond } = await withinOneSecond(async () => {
          // Sells the item out, so this process marks it for the next second.
          expect((await attempt(baseUrls[0]!, saleId, `first-${tries}`)).status).toBe(201);
          await monitor.drain(`${ctx.prefix}:before-${tries}`);
          monitor.clear();
          const all: Answer[] = [];
          for (let i = 0; i < LIMIT + 3; i++) all.push(await attempt(baseUrls[0]!, saleId, user));
          return all;
        });
        // The mark and the attempt count live in one second: past it, Redis is rightly asked again.
        if (!oneSecond && tries < 5) continue;
        expect(oneSecond, 'five runs in a row straddled a second').toBe(true);
        const marker = `${ctx.prefix}:after-${tries}`;
        await monitor.drain(marker);

        expect(answers.slice(0, LIMIT)).toEqual(Array(LIMIT).fill({ status: 409, code: 'SOLD_OUT', retryAfter: null }));
        expect(answers.slice(LIMIT)).toEqual(Array(3).fill({ status: 429, code: 'RATE_LIMITED', retryAfter: '1' }));
        expect(monitor.lines.filter((line) => !line.includes(marker))).toEqual([]);
        return;
      }
    } finally {
      await monitor.close();
    }
  });
});

describe('the per-IP limit (RATE_LIMIT_IP_PER_SEC)', () => {
  let guarded: RunningService | undefined;

  afterAll(async () => {
    await guarded?.stop();
  });

  it('when one address goes over the limit within a second, then it gets 429 with Retry-After, counted in the process without a Redis command', async () => {
    guarded = await startTestApi(ctx, { RATE_LIMIT_IP_PER_SEC: '3' });
    const baseUrl = `http://127.0.0.1:${(guarded.app!.server.address() as AddressInfo).port}`;
    const monitor = await monitorRedis(ctx.redisUrl, ctx.prefix);
    try {
      for (let tries = 1; ; tries++) {
        // A route that needs neither Redis nor Postgres: an id that cannot name an order.
        const { result: statuses, oneSecond } = await withinOneSecond(async () => {
          const all: (readonly [number, string | null])[] = [];
          for (let i = 0; i < 5; i++) {
            const res = await fetch(`${baseUrl}/v1/orders/not-an-order`, { headers: { authorization: tk.shopper('window-shopper') } });
            all.push([res.status, res.headers.get('retry-after')]);
          }
          return all;
        });
        if (!oneSecond && tries < 5) continue;
        expect(statuses.map(([status]) => status)).toEqual([404, 404, 404, 429, 429]);
        expect(Number(statuses[4]![1])).toBeGreaterThanOrEqual(1);
        const marker = `${ctx.prefix}:ip-marker`;
        await monitor.drain(marker);
        expect(monitor.lines.filter((line) => !line.includes(marker))).toEqual([]);
        return;
      }
    } finally {
      await monitor.close();
    }
  });
});
