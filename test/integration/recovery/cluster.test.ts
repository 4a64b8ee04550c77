// The rebuild on Redis Cluster: a private cluster-mode server refuses any command or script that
// spans hash slots, so a sale with a 4-shard item rebuilt there after FLUSHALL proves every write
// keeps to its slot (each shard's script, the anchor's MULTI, the shoppers' index, the groups).
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { startService, type RunningService } from '../../../src/service.ts';
import { startLocalRedis, type LocalServer } from '../../../tools/local-servers.ts';
import type { OrderJson, SaleJson } from '../../support/api-json.ts';
import { saleBody, tokens } from '../../support/api.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';

let ctx: TestContext;
let cluster: LocalServer;
let service: RunningService;

beforeAll(async () => {
  ctx = await createTestContext();
  cluster = await startLocalRedis({ clusterEnabled: true });
  const config = ctx.configWith({ REDIS_CLUSTER_NODES: `127.0.0.1:${cluster.port}`, RATE_LIMIT_USER_PER_SEC: '0' });
  service = await startService(config, createLogger(config), 'all');
});

afterAll(async () => {
  await service?.stop();
  await cluster?.stop();
  await ctx.cleanup();
});

it('a flushed sale with a 4-shard item is rebuilt on a cluster-mode server', async () => {
  const auth = tokens(ctx.config.jwtSecret);
  const app = service.app!;
  const body = saleBody([{ sku: 'c1', stock: 6, perUserLimit: 2 }, { sku: 'c4', stock: 40, perUserLimit: 2, stockShards: 4 }]);
  expect((await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth.admin() }, payload: body })).statusCode).toBe(201);
  const attempt = (user: string, sku: string, key?: string) =>
    app.inject({ method: 'POST', url: `/v1/sales/${body.id}/orders`, headers: { authorization: auth.shopper(user), ...(key && { 'idempotency-key': key }) }, payload: { sku, quantity: 2 } });
  const keyed = await attempt('k1', 'c4', 'key-1');
  expect(keyed.statusCode).toBe(201);
  for (const user of ['a', 'b', 'c', 'd', 'e']) expect((await attempt(user, 'c4')).statusCode).toBe(201);
  expect((await attempt('a', 'c1')).statusCode).toBe(201);

  const db = new pg.Client({ connectionString: ctx.databaseUrl });
  await db.connect();
  try {
    for (let i = 0; ; i++) {
      const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE sale_id = $1', [body.id]);
      if (Number(rows[0]!.n) === 7) break;
      if (i > 200) throw new Error('orders did not persist');
      await sleep(50);
    }
  } finally {
    await db.end();
  }
  await sleep(2_100);
  const admin = new Redis(cluster.url);
  await admin.flushall();
  admin.disconnect();

  let view: SaleJson | undefined;
  for (let i = 0; i < 200 && !view; i++) {
    const response = await app.inject({ method: 'GET', url: `/v1/sales/${body.id}` });
    if (response.statusCode === 200) view = response.json<SaleJson>();
    else expect(response.json()).toMatchObject({ code: 'SALE_RECOVERING' });
    if (!view) await sleep(50);
  }
  expect(Object.fromEntries(view!.items.map((item) => [item.sku, item.available]))).toEqual({ c1: 4, c4: 28 });
  const replay = await attempt('k1', 'c4', 'key-1');
  expect(replay.headers['idempotent-replayed']).toBe('true');
  expect(replay.json<OrderJson>().orderId).toBe(keyed.json<OrderJson>().orderId);
  expect((await attempt('b', 'c4')).json()).toMatchObject({ code: 'PER_USER_LIMIT_EXCEEDED' });
  expect((await attempt('z', 'c4')).statusCode).toBe(201);
});
