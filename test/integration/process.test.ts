// The real process: `npm start` becomes ready, serves metrics on its own port, and exits
// cleanly on SIGTERM; readiness reports 503 while a dependency is unreachable.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { startService } from '../../src/service.ts';
import { createTestContext, type TestContext } from '../support/context.ts';
import { findFreePort } from '../../tools/free-port.ts';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx.cleanup());

async function waitFor(url: string, timeoutMs: number): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      if (response.status === 200) return response;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('npm start', () => {
  let child: ChildProcess;
  afterAll(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  it('when started, then it becomes ready, serves /metrics, and exits 0 within 10 s of SIGTERM', async () => {
    const [port, metricsPort] = [await findFreePort(), await findFreePort()];
    child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'all'], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'test',
        JWT_SECRET: ctx.config.jwtSecret,
        REDIS_URL: ctx.redisUrl,
        REDIS_PREFIX: ctx.prefix,
        DATABASE_URL: ctx.databaseUrl,
        PORT: String(port),
        METRICS_PORT: String(metricsPort),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const ready = await waitFor(`http://127.0.0.1:${port}/health/ready`, 20_000);
    expect(await ready.json()).toMatchObject({ status: 'ok' });
    const metrics = await (await waitFor(`http://127.0.0.1:${metricsPort}/metrics`, 5_000)).text();
    expect(metrics).toContain('process_cpu_user_seconds_total');
    expect(metrics).toContain('nodejs_eventloop_lag_seconds');
    // The storefront port does not serve metrics.
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);

    const started = Date.now();
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
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
