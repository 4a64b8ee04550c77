// REDIS_DURABILITY=replica on a real Redis Cluster (3 masters, 1 replica each), the service as
// real processes (API, worker): the master holding shard 0 of a 4-shard hot item is SIGKILLed
// mid-rush and its replica promoted. Every 201 — answered before the kill, after it, or to a keyed
// retry — must still be there: its order record on the cluster, and exactly one Postgres row. No
// 500s. An answer that is not a 201 (503 REDIS_UNAVAILABLE during the failover, 503 NOT_DURABLE
// while the promoted master has no replica yet) is retried with its key once the old master has
// come back as the new one's replica. Also prints what replica mode costs: short rushes on the
// healthy cluster through an API process in async mode and the one in replica mode, alternated.
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, expect, it, onTestFinished } from 'vitest';
import { orderKeyOf } from '../../../src/stock/keys.ts';
import { compareWithRows, type OrderFacts } from '../../../tools/exactly-once.ts';
import { saleBody } from '../../../tools/sale-body.ts';
import { killMaster, masterForSlot, restartNode, startRedisCluster, waitForFailover, type RedisCluster } from '../../../tools/redis-cluster.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';
import {
  call,
  orderAttempt,
  orderRows,
  pickHotSku,
  shardMasters,
  shardSlot,
  startRush,
  startServiceProcesses,
  tally,
  tokenCache,
  until,
  type Outcome,
  type ServiceProcesses,
} from './cluster-service.ts';

const SHARDS = 4;
const SALE = 'durable';
// Its 4 shards sit on at least two masters (checked below): shard 0's master is killed, others keep selling.
const HOT = pickHotSku(SALE, 'hot', SHARDS, 3, 16_384);
const STOCK = 50_000;
const CONCURRENCY = 24;
const ANSWERED_BEFORE_KILL = 150;
const ATTEMPTS_AFTER_FAILOVER = 150;
const COST_RUSH_MS = 2_000;
const WARM_UP_MS = 1_000;

let ctx: TestContext;
let cluster: RedisCluster;
let service: ServiceProcesses;
let fast: ServiceProcesses;
let db: pg.Client;
let reader: Cluster;
let auth: ReturnType<typeof tokenCache>;

beforeAll(async () => {
  ctx = await createTestContext();
  auth = tokenCache(ctx.config.jwtSecret);
  cluster = await startRedisCluster();
  [service, fast] = await Promise.all([
    startServiceProcesses(ctx, cluster, { REDIS_DURABILITY: 'replica', REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '100' }),
    startServiceProcesses(ctx, cluster, { REDIS_DURABILITY: 'async' }, false),
  ]);
  db = new pg.Client({ connectionString: ctx.databaseUrl });
  await db.connect();
  reader = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
}, 90_000);

afterAll(async () => {
  reader?.disconnect();
  await db?.end();
  await fast?.stop();
  await service?.stop();
  await cluster?.stop();
  await ctx?.cleanup();
}, 60_000);

async function replicaOnline(port: number): Promise<boolean> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    return /slave0:.*state=online/.test(await client.info('replication'));
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** CONCURRENCY shoppers ordering for `ms` through `origin`: orders/s, mean latency, statuses seen. */
async function timedRush(origin: string, saleId: string, tag: string, ms = COST_RUSH_MS): Promise<{ perSecond: number; meanMs: number; statuses: string[] }> {
  const rush = startRush({ origin, auth, saleId, concurrency: CONCURRENCY, next: (n) => ({ userId: `${tag}${n}`, sku: HOT, quantity: 1, key: `${tag}k${n}` }) });
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const outcomes = await rush.stop();
  const elapsedMs = performance.now() - started;
  const latency = outcomes.reduce((sum, o) => sum + (o.reply.answeredAt - o.reply.sentAt), 0) / Math.max(1, outcomes.length);
  return { perSecond: Math.round((outcomes.length / elapsedMs) * 1000), meanMs: Math.round(latency * 10) / 10, statuses: Object.keys(tally(outcomes)) };
}

it('replica mode costs: the same rush on the healthy cluster through the async and the replica API process', async () => {
  const body = saleBody([{ sku: HOT, stock: STOCK, perUserLimit: 1 }], { id: 'cost' });
  const created = await call(service.origin, 'POST', '/v1/admin/sales', { auth: auth.admin(), body: { ...body, items: body.items.map((item) => ({ ...item, stockShards: SHARDS })) } });
  expect(created.status, JSON.stringify(created.json)).toBe(201);
  // A first round warms both up (JIT, connections, script caches); the second is measured.
  await timedRush(fast.origin, 'cost', 'wa', WARM_UP_MS);
  await timedRush(service.origin, 'cost', 'wr', WARM_UP_MS);
  const asyncCost = await timedRush(fast.origin, 'cost', 'a');
  const replicaCost = await timedRush(service.origin, 'cost', 'r');
  console.info(
    `[cluster/failover] cost of REDIS_DURABILITY=replica, ${CONCURRENCY} concurrent shoppers for ${COST_RUSH_MS} ms over HTTP, 4-shard item: ` +
      `async ${asyncCost.perSecond} orders/s (mean ${asyncCost.meanMs} ms), replica ${replicaCost.perSecond} orders/s (mean ${replicaCost.meanMs} ms)`,
  );
  expect(asyncCost.statuses).toEqual(['201']);
  expect(replicaCost.statuses).toEqual(['201']);
});

it(
  'in replica mode, when the master holding a hot shard is SIGKILLed mid-rush, then every 201 (before the kill, after it, ' +
    'or to a keyed retry) is on the promoted master and exactly once in Postgres, and nothing answers 500',
  async () => {
    const t0 = performance.now();
    const body = saleBody([{ sku: HOT, stock: STOCK, perUserLimit: 1 }], { id: SALE });
    const created = await call(service.origin, 'POST', '/v1/admin/sales', {
      auth: auth.admin(),
      body: { ...body, items: body.items.map((item) => ({ ...item, stockShards: SHARDS })) },
    });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const masters = await shardMasters(cluster, SALE, HOT, SHARDS);
    expect(new Set(masters.map((m) => m.port)).size).toBeGreaterThanOrEqual(2);
    const victim = await masterForSlot(cluster, shardSlot(SALE, HOT, 0));

    const rush = startRush({
      origin: service.origin,
      auth,
      saleId: SALE,
      concurrency: CONCURRENCY,
      next: (n) => ({ userId: `u${n}`, sku: HOT, quantity: 1, key: `k${n}` }),
    });
    onTestFinished(() => rush.stop().then(() => undefined));
    await until(() => rush.outcomes.filter((o) => o.reply.status === 201).length >= ANSWERED_BEFORE_KILL, 30_000, 20);
    const answeredBeforeKill = rush.outcomes.filter((o) => o.reply.status === 201).length;
    await killMaster(cluster, victim.port);
    const failover = await waitForFailover(cluster, victim.port);
    const atFailover = rush.outcomes.length;
    await until(() => rush.outcomes.length >= atFailover + ATTEMPTS_AFTER_FAILOVER, 30_000, 20);
    const outcomes = await rush.stop();

    // The old master comes back as the promoted one's replica: from then on WAIT can be satisfied.
    await restartNode(cluster, victim.port);
    const replicaBack = await until(() => replicaOnline(failover.promoted.port), 20_000);
    let pending = outcomes.filter((o) => o.reply.status !== 201).map((o) => o.attempt);
    const retried = pending.length;
    const retries: Outcome[] = [];
    for (let round = 0; round < 5 && pending.length > 0; round++) {
      const answers = await Promise.all(pending.map((attempt) => orderAttempt(service.origin, auth, SALE, attempt)));
      retries.push(...answers);
      pending = pending.filter((_, i) => answers[i]!.reply.status !== 201);
      if (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, 500));
    }

    const accepted: OrderFacts[] = [...outcomes, ...retries].flatMap((o) => (o.order ? [o.order] : []));
    const ids = [...new Set(accepted.map((o) => o.id))];
    const present = await Promise.all(ids.map((id) => reader.exists(orderKeyOf(ctx.prefix, id)!)));
    const missingInRedis = ids.filter((_, i) => present[i] !== 1);
    await until(async () => (await orderRows(db, SALE)).length >= ids.length, 30_000, 200);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a late extra row would show up now
    const rows = await orderRows(db, SALE);

    console.info(
      `[cluster/failover] hot item ${HOT} on ${masters.map((m) => m.port).join(', ')}; killed ${victim.port}, failover ${failover.elapsedMs} ms; ` +
        `${answeredBeforeKill} 201s before the kill; outcomes ${JSON.stringify(tally(outcomes))}; ${retried} non-201s retried → ` +
        `${pending.length} still not 201; ${ids.length} orders, ${missingInRedis.length} missing in Redis, ${rows.length} rows; whole test ${Math.round(performance.now() - t0)} ms`,
    );

    const all = [...outcomes, ...retries];
    expect(all.filter((o) => o.reply.status !== 201 && o.reply.status !== 503).map((o) => `${o.reply.status} ${o.code ?? ''}`)).toEqual([]);
    expect(all.filter((o) => o.reply.status === 503 && (o.reply.retryAfter === undefined || !['NOT_DURABLE', 'REDIS_UNAVAILABLE'].includes(o.code ?? '')))).toEqual([]);
    expect(answeredBeforeKill).toBeGreaterThanOrEqual(ANSWERED_BEFORE_KILL);
    expect(replicaBack).toBe(true);
    expect(pending).toEqual([]);
    expect(missingInRedis).toEqual([]);
    expect(compareWithRows(accepted, rows)).toEqual({ missing: [], duplicated: [], mismatched: [], extra: [], rejected: [] });
  },
  120_000,
);
