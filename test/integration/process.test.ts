// The real process: `npm start` becomes ready, serves metrics on its own port, and exits
// cleanly on SIGTERM; readiness reports 503 while a dependency is unreachable.
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { startService } from '../../src/service.ts';
import { createTestContext, type TestContext } from '../support/context.ts';
import { hasExited, serviceEnvironment, spawnService, terminate, waitFor200 } from '../support/service-process.ts';
import { findFreePort } from '../../tools/free-port.ts';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx.cleanup());

describe('npm start', () => {
  let child: ChildProcess;
  afterAll(() => {
    if (!hasExited(child)) child.kill('SIGKILL');
  });

  it('when started, then it becomes ready, serves /metrics, and exits 0 within 10 s of SIGTERM', async () => {
    const [port, metricsPort] = [await findFreePort(), await findFreePort()];
    child = spawnService(['--import', 'tsx', 'src/main.ts', 'all'], serviceEnvironment(ctx, { PORT: String(port), METRICS_PORT: String(metricsPort) }));
    const ready = await waitFor200(`http://127.0.0.1:${port}/health/ready`, 20_000);
    expect(await ready.json()).toMatchObject({ status: 'ok' });
    const metrics = await (await waitFor200(`http://127.0.0.1:${metricsPort}/metrics`, 5_000)).text();
    expect(metrics).toContain('process_cpu_user_seconds_total');
    expect(metrics).toContain('nodejs_eventloop_lag_seconds');
    // The storefront port does not serve metrics.
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);

    const { code, elapsedMs } = await terminate(child);
    expect(code).toBe(0);
    expect(elapsedMs).toBeLessThan(10_000);
  });
});

describe('readiness', () => {
  it('when Redis is unreachable, then /health/ready answers 503 and /health/live 200', async () => {
    const deadPort = await findFreePort();
    const config = ctx.configWith({ REDIS_URL: `redis://127.0.0.1:${deadPort}` });
    const service = await startService(config, createLogger(config), 'api');
    try {
      const ready = await service.app!.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json()).toMatchObject({ status: 'unavailable', checks: { redis: false, postgres: true } });
      expect((await service.app!.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
    } finally {
      await service.stop();
    }
  });

  it('when a request carries x-request-id, then the response echoes it; otherwise one is minted', async () => {
    const service = await startService(ctx.config, createLogger(ctx.config), 'api');
    const app = service.app!;
    const echoed = await app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'req-123' } });
    expect(echoed.headers['x-request-id']).toBe('req-123');
    const minted = await app.inject({ method: 'GET', url: '/health/live' });
    expect(minted.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    await service.stop();
  });
});
