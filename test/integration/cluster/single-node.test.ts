// Redis Cluster: with REDIS_CLUSTER_NODES set the service runs unchanged on a cluster. A private
// cluster-mode server refuses any script or command that spans hash slots, so this proves every
// script keeps to its sale's slot and BullMQ's keys to the queue's.
import { afterAll, beforeAll, expect, it } from 'vitest';
import pg from 'pg';
import { createLogger } from '../../../src/logger.ts';
import { startService, type RunningService } from '../../../src/service.ts';
import { saleBody, tokens } from '../../support/api.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';
import { startLocalRedis, type LocalServer } from '../../../tools/local-servers.ts';

let ctx: TestContext;
let cluster: LocalServer;
let service: RunningService;

beforeAll(async () => {
  ctx = await createTestContext();
  cluster = await startLocalRedis({ clusterEnabled: true });
  const config = ctx.configWith({ REDIS_CLUSTER_NODES: `127.0.0.1:${cluster.port}`, RATE_LIMIT_USER_PER_SEC: '5' });
  service = await startService(config, createLogger(config), 'all');
});

afterAll(async () => {
  await service?.stop();
  await cluster?.stop();
  await ctx.cleanup();
});

it('when the service runs on Redis Cluster, then orders are decided, paid, cancelled and persisted', async () => {
  const auth = tokens(ctx.config.jwtSecret);
  const app = service.app!;
  expect((await app.inject({ method: 'GET', url: '/health/ready' })).json()).toMatchObject({ status: 'ok' });
  const body = saleBody([{ sku: 'c1', stock: 5, lowStock: { units: 1 } }, { sku: 'c2', stock: 3 }]);
  expect((await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth.admin() }, payload: body })).statusCode).toBe(201);

  const attempt = (user: string, sku: string, key?: string) =>
    app.inject({
      method: 'POST',
      url: `/v1/sales/${body.id}/orders`,
      headers: { authorization: auth.shopper(user), ...(key && { 'idempotency-key': key }) },
      payload: { sku, quantity: 1 },
    });
  const orders = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((user) => attempt(user, 'c1', `k-${user}`)));
  expect(orders.map((o) => o.statusCode).sort()).toEqual([201, 201, 201, 201, 409]);
  expect((await attempt('a', 'c1', 'k-a')).headers['idempotent-replayed']).toBe('true');
  const accepted = orders.filter((o) => o.statusCode === 201).map((o) => o.json() as { orderId: string; userId: string });
  const [first, second] = accepted;
  expect((await app.inject({ method: 'POST', url: `/v1/orders/${first!.orderId}/payment`, headers: { authorization: auth.shopper(first!.userId) }, payload: { paymentRef: 'p' } })).statusCode).toBe(200);
  expect((await app.inject({ method: 'POST', url: `/v1/orders/${second!.orderId}/cancel`, headers: { authorization: auth.shopper(second!.userId) } })).statusCode).toBe(200);
  // Braces and separators in a user id or key are encoded: the keys stay in the sale's slot.
  const awkward = await attempt('用户:{x} y', 'c2', '{k}:1');
  expect(awkward.statusCode, awkward.body).toBe(201);
  expect((await app.inject({ method: 'POST', url: `/v1/admin/sales/${body.id}/items/c2/restock`, headers: { authorization: auth.admin() }, payload: { quantity: 2 } })).statusCode).toBe(200);
  expect((await app.inject({ method: 'POST', url: `/v1/admin/sales/${body.id}/close`, headers: { authorization: auth.admin() } })).statusCode).toBe(200);
  expect((await attempt('z', 'c2')).json().code).toBe('SALE_ENDED');

  const db = new pg.Client({ connectionString: ctx.databaseUrl });
  await db.connect();
  try {
    const deadline = Date.now() + 15_000;
    let statuses: string[] = [];
    while (Date.now() < deadline) {
      statuses = (await db.query<{ status: string }>('SELECT status FROM orders WHERE sale_id = $1 ORDER BY status', [body.id])).rows.map((r) => r.status);
      if (statuses.length === 5 && statuses.includes('paid') && statuses.includes('cancelled')) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(statuses).toEqual(['cancelled', 'paid', 'pending_payment', 'pending_payment', 'pending_payment']);
  } finally {
    await db.end();
  }
});
