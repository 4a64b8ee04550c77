// A single Redis (REDIS_URL) that dies: an order answers 503 REDIS_UNAVAILABLE with Retry-After
// within seconds — an outage, not a bug, so never 500 — readiness says so, and both recover when
// Redis is back.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/service.ts';
import { startLocalRedis, type LocalServer } from '../../tools/local-servers.ts';
import { saleBody, tokens } from '../support/api.ts';
import { createTestContext, type TestContext } from '../support/context.ts';

let ctx: TestContext;
let redis: LocalServer;
let service: RunningService | undefined;

beforeAll(async () => {
  ctx = await createTestContext();
  redis = await startLocalRedis();
  const config = ctx.configWith({ REDIS_URL: redis.url, RATE_LIMIT_USER_PER_SEC: '0' });
  service = await startService(config, createLogger(config), 'api');
}, 60_000);

afterAll(async () => {
  await service?.stop();
  await redis?.stop();
  await ctx?.cleanup();
}, 30_000);

it('when the only Redis is SIGKILLed, then an order answers 503 REDIS_UNAVAILABLE with Retry-After within seconds, and readiness comes back with Redis', async () => {
  const app = service!.app!;
  const auth = tokens(ctx.config.jwtSecret);
  const body = saleBody([{ sku: 'd1', stock: 10 }]);
  expect((await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth.admin() }, payload: body })).statusCode).toBe(201);
  const order = (key: string) =>
    app.inject({
      method: 'POST',
      url: `/v1/sales/${body.id}/orders`,
      headers: { authorization: auth.shopper('u1'), 'idempotency-key': key },
      payload: { sku: 'd1', quantity: 1 },
    });
  expect((await order('before')).statusCode).toBe(201);

  await redis.kill('SIGKILL');
  const started = Date.now();
  const [down, another] = await Promise.all([order('during-1'), order('during-2')]);
  const elapsedMs = Date.now() - started;
  for (const response of [down, another]) {
    expect(response.statusCode, response.body).toBe(503);
    expect(response.json()).toMatchObject({ code: 'REDIS_UNAVAILABLE', message: expect.stringContaining('Idempotency-Key') });
    expect(Number(response.headers['retry-after'])).toBeGreaterThan(0);
  }
  expect(elapsedMs).toBeLessThan(10_000);
  expect((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(503);

  await redis.restart();
  const deadline = Date.now() + 15_000;
  let ready = 0;
  while (Date.now() < deadline && ready !== 200) {
    ready = (await app.inject({ method: 'GET', url: '/health/ready' })).statusCode;
    if (ready !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(ready).toBe(200);
}, 45_000);
