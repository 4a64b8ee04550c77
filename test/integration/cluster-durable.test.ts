// REDIS_DURABILITY=replica on a real Redis Cluster (3 masters, 1 replica each): the master holding
// a sale is SIGKILLed mid-rush. Every 201 — answered before the kill, after it, or to a keyed
// retry — must still be there: its order record on the promoted master, and once drained exactly
// one Postgres row. No 500s. An answer that is not a 201 (503 REDIS_UNAVAILABLE during the
// failover, 503 NOT_DURABLE while the promoted master has no replica yet) is retried with its key
// once the old master has come back as the new one's replica. Also prints what replica mode costs:
// the same short rush on the healthy cluster in async and in replica mode.
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/service.ts';
import { saleKeys } from '../../src/stock/keys.ts';
import { compareWithRows, type OrderFacts } from '../../tools/exactly-once.ts';
import { keyedAttempt, type Attempt, type Outcome } from '../support/keyed-attempt.ts';
import { killMaster, masterForSlot, restartNode, slotOf, startRedisCluster, waitForFailover, type RedisCluster } from '../../tools/redis-cluster.ts';
import { saleBody, tokens } from '../support/api.ts';
import { createTestContext, type TestContext } from '../support/context.ts';

const STOCK = 50_000;
const CONCURRENCY = 24;
const COST_RUSH_MS = 800;
const RUSH_BEFORE_KILL_MS = 700;
const RUSH_AFTER_FAILOVER_MS = 700;

let ctx: TestContext;
let cluster: RedisCluster;
let fast: RunningService | undefined;
let durable: RunningService | undefined;
let db: pg.Client;
let reader: Cluster;

beforeAll(async () => {
  ctx = await createTestContext();
  cluster = await startRedisCluster();
  const base = { REDIS_CLUSTER_NODES: cluster.seedNodes, RATE_LIMIT_USER_PER_SEC: '0' };
  const asyncConfig = ctx.configWith({ ...base, REDIS_DURABILITY: 'async' });
  fast = await startService(asyncConfig, createLogger(asyncConfig), 'api');
  const replicaConfig = ctx.configWith({ ...base, REDIS_DURABILITY: 'replica', REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '100' });
  durable = await startService(replicaConfig, createLogger(replicaConfig), 'all');
  db = new pg.Client({ connectionString: ctx.databaseUrl });
  await db.connect();
  reader = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
}, 90_000);

afterAll(async () => {
  reader?.disconnect();
  await db?.end();
  await fast?.stop();
  // Known issue, not this test's subject: after the killed master has been restarted as a replica,
  // closing the BullMQ persist worker sometimes never returns; bounded so the file still ends.
  const stopped = await Promise.race([durable?.stop().then(() => true), sleep(10_000).then(() => false)]);
  if (!stopped) console.warn('[cluster-durable] service.stop() did not return within 10 s (BullMQ worker close)');
  await cluster?.stop();
  await ctx?.cleanup();
}, 60_000);


const auth = () => tokens(ctx.config.jwtSecret);

async function createSale(service: RunningService, id: string): Promise<string> {
  const body = saleBody([{ sku: 'd1', stock: STOCK, perUserLimit: 1 }], { id });
  const created = await service.app!.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth().admin() }, payload: body });
  expect(created.statusCode, created.body).toBe(201);
  return body.id;
}

function order(service: RunningService, saleId: string, attempt: Attempt): Promise<Outcome> {
  return keyedAttempt(service.app!, auth(), saleId, 'd1', attempt);
}

/** CONCURRENCY shoppers ordering back to back until `keepGoing()` says stop; every attempt has a key of its own. */
function rush(service: RunningService, saleId: string, tag: string, keepGoing: () => boolean) {
  const outcomes: { attempt: Attempt; outcome: Outcome }[] = [];
  let started = 0;
  const done = Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (keepGoing()) {
        const n = started++;
        const attempt = { userId: `${tag}${n}`, key: `${tag}k${n}` };
        outcomes.push({ attempt, outcome: await order(service, saleId, attempt) });
      }
    }),
  ).then(() => outcomes);
  return { outcomes, started: () => started, done };
}

async function timedRush(service: RunningService, saleId: string, tag: string): Promise<{ perSecond: number; meanMs: number; statuses: number[] }> {
  const until = Date.now() + COST_RUSH_MS;
  const started = performance.now();
  const outcomes = await rush(service, saleId, tag, () => Date.now() < until).done;
  const elapsedMs = performance.now() - started;
  return {
    perSecond: Math.round((outcomes.length / elapsedMs) * 1000),
    meanMs: Math.round(((elapsedMs * CONCURRENCY) / outcomes.length) * 100) / 100,
    statuses: [...new Set(outcomes.map(({ outcome }) => outcome.status))],
  };
}

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

it(
  'in replica mode, when the master holding a sale is SIGKILLed mid-rush, then every 201 (before the kill, after it, ' +
    'or to a keyed retry) is on the promoted master and exactly once in Postgres, and nothing answers 500',
  async () => {
    // The cost, on the healthy cluster: the same rush through the async and the replica service.
    const costSale = await createSale(durable!, `cost-${Date.now()}`);
    // A first round warms both paths up (JIT, connections, script caches); the second is measured.
    await timedRush(fast!, costSale, 'wa');
    await timedRush(durable!, costSale, 'wr');
    const asyncCost = await timedRush(fast!, costSale, 'a');
    const replicaCost = await timedRush(durable!, costSale, 'r');
    console.log(
      `[cluster-durable] cost of REDIS_DURABILITY=replica, ${CONCURRENCY} concurrent shoppers for ${COST_RUSH_MS} ms in process: ` +
        `async ${asyncCost.perSecond} orders/s (mean ${asyncCost.meanMs} ms), replica ${replicaCost.perSecond} orders/s (mean ${replicaCost.meanMs} ms)`,
    );
    expect(asyncCost.statuses).toEqual([201]);
    expect(replicaCost.statuses).toEqual([201]);
    await fast!.stop();
    fast = undefined;

    const saleId = await createSale(durable!, `durable-${Date.now()}`);
    const master = await masterForSlot(cluster, slotOf(`{${saleId}}`));
    let rushing = true;
    const main = rush(durable!, saleId, 'u', () => rushing);
    await sleep(RUSH_BEFORE_KILL_MS);
    const answeredBeforeKill = main.outcomes.filter(({ outcome }) => outcome.status === 201).length;
    await killMaster(cluster, master.port);
    const failover = await waitForFailover(cluster, master.port);
    await sleep(RUSH_AFTER_FAILOVER_MS);
    rushing = false;
    const outcomes = await main.done;

    // The old master comes back as the promoted one's replica: from then on WAIT can be satisfied.
    await restartNode(cluster, master.port);
    const replicaBack = await until(() => replicaOnline(failover.promoted.port), 20_000);
    let pending = outcomes.filter(({ outcome }) => outcome.status !== 201).map(({ attempt }) => attempt);
    const retried = pending.length;
    const retries: Outcome[] = [];
    for (let round = 0; round < 5 && pending.length > 0; round++) {
      const answers = await Promise.all(pending.map((attempt) => order(durable!, saleId, attempt)));
      retries.push(...answers);
      pending = pending.filter((_, i) => answers[i]!.status !== 201);
      if (pending.length > 0) await sleep(500);
    }

    const counts: Record<string, number> = {};
    for (const { outcome } of outcomes) {
      const label = `${outcome.status}${outcome.code ? ` ${outcome.code}` : ''}`;
      counts[label] = (counts[label] ?? 0) + 1;
    }
    const accepted = [...outcomes.map(({ outcome }) => outcome.order), ...retries.map((outcome) => outcome.order)].filter(
      (o): o is OrderFacts => o !== undefined,
    );
    const ids = [...new Set(accepted.map((o) => o.id))];
    // Read on the masters (the promoted one for this sale) through a client of the test's own.
    const names = saleKeys(ctx.prefix, saleId);
    const present = await Promise.all(ids.map((id) => reader.exists(names.order(id))));
    const missingInRedis = ids.filter((_, i) => present[i] !== 1);

    const rows = async () =>
      (
        await db.query<{ id: string; userId: string; sku: string; quantity: number }>(
          'SELECT id, user_id AS "userId", sku, quantity FROM orders WHERE sale_id = $1',
          [saleId],
        )
      ).rows;
    await until(async () => (await rows()).length >= ids.length, 20_000);
    await sleep(300); // a late extra row would show up now
    const persisted = await rows();

    console.log(
      `[cluster-durable] failover ${failover.elapsedMs} ms; ${answeredBeforeKill} 201s before the kill; outcomes ${JSON.stringify(counts)}; ` +
        `${retried} non-201s retried → ${pending.length} still not 201; ${ids.length} orders accepted, ${missingInRedis.length} missing in Redis, ${persisted.length} rows`,
    );

    const all = [...outcomes.map(({ outcome }) => outcome), ...retries];
    expect(all.filter((o) => o.status >= 500 && o.status !== 503).map((o) => `${o.status} ${o.code ?? ''}`)).toEqual([]);
    expect(all.filter((o) => o.status === 503 && o.retryAfter === undefined)).toEqual([]);
    expect(all.filter((o) => o.status === 503 && o.code !== 'NOT_DURABLE' && o.code !== 'REDIS_UNAVAILABLE')).toEqual([]);
    expect(all.filter((o) => o.status !== 201 && o.status !== 503).map((o) => `${o.status} ${o.code ?? ''}`)).toEqual([]);
    expect(answeredBeforeKill).toBeGreaterThan(0);
    expect(replicaBack).toBe(true);
    expect(pending).toEqual([]);
    expect(missingInRedis).toEqual([]);
    expect(compareWithRows(accepted, persisted)).toEqual({ missing: [], duplicated: [], mismatched: [], extra: [], rejected: [] });
  },
  120_000,
);

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(100);
  }
}
