// Load shedding: when the event loop falls behind, order attempts are refused with 503
// OVERLOADED and Retry-After before any stock is touched; probes and operators still answer; service resumes.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { RunningService } from '../../../src/service.ts';
import { shardKeys } from '../../../src/stock/keys.ts';
import { saleBody, testApi, tokens } from '../../support/api.ts';
import type { TestContext } from '../../support/context.ts';

const fixture = testApi({ overrides: { SHED_EVENT_LOOP_DELAY_MS: '100' } });
let ctx: TestContext;
let api: RunningService;
beforeAll(async () => {
  ({ ctx, service: api } = await fixture.open());
});
afterAll(() => fixture.close());

/**
 * Waits until @fastify/under-pressure's sampler has seen the lag, within a bound. It samples
 * every 100 ms and each sample only covers the window since the last: right after the block the
 * state may still be the previous, calm window's, and a sample taken in between may fall before
 * the lag is recorded, so the spike shows in the next sample instead. The pressure state then
 * holds until the following sample, ~100 ms later, which is far more than a request needs.
 */
async function untilUnderPressure(app: NonNullable<RunningService['app']>, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (!app.isUnderPressure()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return true;
}

function blockEventLoop(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy: what a CPU-starved process looks like to the event loop
  }
}

it('when the event loop lags past the threshold, then attempts get 503 OVERLOADED with Retry-After and stock is untouched', async () => {
  const auth = tokens(ctx.config.jwtSecret);
  const body = saleBody([{ sku: 'busy', stock: 10 }]);
  expect((await api.app!.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth.admin() }, payload: body })).statusCode).toBe(201);
  const attempt = () =>
    api.app!.inject({ method: 'POST', url: `/v1/sales/${body.id}/orders`, headers: { authorization: auth.shopper('u') }, payload: { sku: 'busy', quantity: 1 } });

  blockEventLoop(1_500);
  expect(await untilUnderPressure(api.app!, 2_000), 'the sampler saw the lag within 2 s').toBe(true);
  const shed = await attempt();
  expect(shed.statusCode).toBe(503);
  expect(shed.json()).toEqual({ statusCode: 503, code: 'OVERLOADED', error: 'Service Unavailable', message: expect.any(String) });
  expect(shed.headers['retry-after']).toBe('1');
  expect((await api.app!.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
  // Operators are never shed: closing or delisting may be what the overload needs.
  expect((await api.app!.inject({ method: 'GET', url: '/v1/admin/sales', headers: { authorization: auth.admin() } })).statusCode).toBe(200);
  const redis = new Redis(ctx.redisUrl);
  expect(await redis.hget(shardKeys(ctx.prefix, body.id, 'busy', 0).item, 'available')).toBe('10');
  redis.disconnect();

  // Once the loop keeps up again, attempts are decided normally.
  let status = 503;
  for (let i = 0; i < 30 && status === 503; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    status = (await attempt()).statusCode;
  }
  expect(status).toBe(201);
});
