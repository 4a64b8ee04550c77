// REDIS_DURABILITY=replica on a single Redis: with no replica to acknowledge it, an order is
// answered 503 NOT_DURABLE with Retry-After (never 201, never 500), and a keyed retry once a
// replica has joined replays that same order as a 201. The same Redis in async mode answers 201.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/service.ts';
import { startLocalRedis, type LocalServer } from '../../tools/local-servers.ts';
import { saleBody, tokens } from '../support/api.ts';
import { createTestContext, type TestContext } from '../support/context.ts';

let ctx: TestContext;
let primary: LocalServer;
let replica: LocalServer | undefined;
const services: RunningService[] = [];

beforeAll(async () => {
  ctx = await createTestContext();
  primary = await startLocalRedis();
}, 60_000);

afterAll(async () => {
  for (const service of services) await service.stop();
  await replica?.stop();
  await primary?.stop();
  await ctx?.cleanup();
}, 30_000);

async function serve(durability: Record<string, string>): Promise<RunningService> {
  const config = ctx.configWith({ REDIS_URL: primary.url, RATE_LIMIT_USER_PER_SEC: '0', ...durability });
  const service = await startService(config, createLogger(config), 'api');
  services.push(service);
  return service;
}

function orderer(service: RunningService, saleId: string) {
  const auth = tokens(ctx.config.jwtSecret);
  return (userId: string, key: string) =>
    service.app!.inject({
      method: 'POST',
      url: `/v1/sales/${saleId}/orders`,
      headers: { authorization: auth.shopper(userId), 'idempotency-key': key },
      payload: { sku: 'r1', quantity: 1 },
    });
}

it(
  'when no replica acknowledges, then replica mode answers 503 NOT_DURABLE with Retry-After, async mode 201, ' +
    'and once a replica has joined the keyed retry replays the same order as a 201',
  async () => {
    // 1 s: once the replica is online its acknowledgement must arrive in time on a loaded CI machine too (50 ms did not).
    const durable = await serve({ REDIS_DURABILITY: 'replica', REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '1000' });
    const auth = tokens(ctx.config.jwtSecret);
    const body = saleBody([{ sku: 'r1', stock: 10, perUserLimit: 1 }]);
    expect((await durable.app!.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth.admin() }, payload: body })).statusCode).toBe(201);
    const order = orderer(durable, body.id);

    const refused = await order('u1', 'k1');
    expect(refused.statusCode, refused.body).toBe(503);
    expect(refused.json()).toMatchObject({ code: 'NOT_DURABLE', message: expect.stringContaining('Idempotency-Key') });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    const orderId = /Order (\S+) /.exec((refused.json() as { message: string }).message)?.[1];
    expect(orderId).toMatch(/^[0-9a-f-]{36}$/);
    // Retrying before any replica exists replays the order, and still cannot promise it.
    const again = await order('u1', 'k1');
    expect(again.statusCode).toBe(503);
    expect((again.json() as { message: string }).message).toContain(orderId!);
    // A refusal needs no replica: the per-user limit is decided and answered 409.
    expect((await order('u1', 'k-other')).statusCode).toBe(409);

    // Async mode on the same Redis: the 201 does not wait for replicas.
    const fast = await serve({ REDIS_DURABILITY: 'async' });
    const asyncAnswer = await orderer(fast, body.id)('u2', 'k2');
    expect(asyncAnswer.statusCode, asyncAnswer.body).toBe(201);

    replica = await startLocalRedis({ extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const admin = new Redis(primary.url);
    try {
      const deadline = Date.now() + 10_000;
      while (!/slave0:.*state=online/.test(await admin.info('replication')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    } finally {
      admin.disconnect();
    }
    const replayed = await order('u1', 'k1');
    expect(replayed.statusCode, replayed.body).toBe(201);
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(replayed.json()).toMatchObject({ orderId });
    const fresh = await order('u3', 'k3');
    expect(fresh.statusCode, fresh.body).toBe(201);
    expect(fresh.headers['idempotent-replayed']).toBeUndefined();
  },
  60_000,
);
