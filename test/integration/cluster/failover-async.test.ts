// A Redis Cluster master SIGKILLed mid-rush: its replica is promoted within seconds, and the
// requests caught in between must ride the failover out or answer 503 with Retry-After — never
// 500 — and every 201 must become exactly one Postgres row. A request answered 503 may still have
// been decided (the script ran, its reply was lost with the master): retrying it with its
// Idempotency-Key replays that decision, so its row is no phantom.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { startService, type RunningService } from '../../../src/service.ts';
import { compareWithRows, type OrderFacts } from '../../../tools/exactly-once.ts';
import { keyedAttempt, type Attempt, type Outcome } from '../../support/keyed-attempt.ts';
import { killMaster, masterForSlot, startRedisCluster, waitForFailover, type RedisCluster } from '../../../tools/redis-cluster.ts';
import { saleBody, tokens } from '../../support/api.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';
import { shardSlot } from './cluster-service.ts';

const STOCK = 20_000;
const CONCURRENCY = 24;
const RUSH_BEFORE_KILL_MS = 700;
const RUSH_AFTER_FAILOVER_MS = 1_000;

let ctx: TestContext;
let cluster: RedisCluster;
let service: RunningService | undefined;
let db: pg.Client;

beforeAll(async () => {
  ctx = await createTestContext();
  cluster = await startRedisCluster();
  const config = ctx.configWith({ REDIS_CLUSTER_NODES: cluster.seedNodes, RATE_LIMIT_USER_PER_SEC: '0' });
  service = await startService(config, createLogger(config), 'all');
  db = new pg.Client({ connectionString: ctx.databaseUrl });
  await db.connect();
}, 90_000);

afterAll(async () => {
  await db?.end();
  // Known issue, not this test's subject: after a failover, stopping the service (its persist
  // workers' BullMQ close) sometimes never returns; bounded so the file still ends and cleans up.
  const stopped = await Promise.race([service?.stop().then(() => true), sleep(10_000).then(() => false)]);
  if (!stopped) console.warn('[cluster/failover-async] service.stop() did not return within 10 s');
  await cluster?.stop();
  await ctx?.cleanup();
}, 60_000);


it(
  'when the master holding a sale is SIGKILLed mid-rush, then no request gets a 500, every 201 is one row, ' +
    'every 503 carries Retry-After and its keyed retry replays whatever it decided, and readiness comes back',
  async () => {
    const app = service!.app!;
    const auth = tokens(ctx.config.jwtSecret);
    const body = saleBody([{ sku: 'f1', stock: STOCK, perUserLimit: 1 }], { id: `failover-${Date.now()}` });
    // Every key an order of the item touches carries its (only) stock shard's tag: that master is the one to kill.
    const master = await masterForSlot(cluster, shardSlot(body.id, 'f1', 0));
    expect((await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth.admin() }, payload: body })).statusCode).toBe(201);

    const order = (attempt: Attempt): Promise<Outcome> => keyedAttempt(app, auth, body.id, 'f1', attempt);

    const outcomes: { attempt: Attempt; outcome: Outcome }[] = [];
    let started = 0;
    let finished = 0;
    let slowestMs = 0;
    let rushing = true;
    const rush = Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (rushing) {
          const n = started++;
          const attempt = { userId: `u${n}`, key: `k${n}` };
          const sent = Date.now();
          outcomes.push({ attempt, outcome: await order(attempt) });
          slowestMs = Math.max(slowestMs, Date.now() - sent);
          finished++;
        }
      }),
    );

    await sleep(RUSH_BEFORE_KILL_MS);
    const answeredBeforeKill = finished;
    const inFlightAtKill = started - finished;
    await killMaster(cluster, master.port);
    const failover = await waitForFailover(cluster, master.port);
    await sleep(RUSH_AFTER_FAILOVER_MS);
    rushing = false;
    await rush;

    // After the failover, each 503 is retried with its key: a replay (or a first decision) then.
    const unavailable = outcomes.filter(({ outcome }) => outcome.status === 503);
    const retries = await Promise.all(unavailable.map(({ attempt }) => order(attempt)));

    const counts: Record<number, number> = {};
    for (const { outcome } of outcomes) counts[outcome.status] = (counts[outcome.status] ?? 0) + 1;
    const accepted = [...outcomes.map(({ outcome }) => outcome.order), ...retries.map((outcome) => outcome.order)].filter(
      (o): o is OrderFacts => o !== undefined,
    );

    const ready = await until(async () => (await app.inject({ method: 'GET', url: '/health/ready' })).statusCode === 200, 15_000);
    const expectedRows = new Set(accepted.map((o) => o.id)).size;
    const rows = async () =>
      (
        await db.query<{ id: string; userId: string; sku: string; quantity: number }>(
          'SELECT id, user_id AS "userId", sku, quantity FROM orders WHERE sale_id = $1',
          [body.id],
        )
      ).rows;
    await until(async () => (await rows()).length >= expectedRows, 20_000);
    await sleep(300); // a late extra row would show up now
    const persisted = await rows();

    console.info(
      `[cluster/failover-async] failover ${failover.elapsedMs} ms; ${answeredBeforeKill} answered before the kill, ${inFlightAtKill} in flight at it; ` +
        `outcomes ${JSON.stringify(counts)}, slowest answer ${slowestMs} ms; ${unavailable.length} 503s retried → ${JSON.stringify(retries.map((r) => r.status))}; ` +
        `${expectedRows} orders accepted, ${persisted.length} rows`,
    );

    const unexpected = outcomes.filter(({ outcome }) => ![201, 409, 429, 503].includes(outcome.status));
    expect(unexpected.map(({ outcome }) => `${outcome.status} ${outcome.code ?? ''}`)).toEqual([]);
    expect(unavailable.filter(({ outcome }) => outcome.retryAfter === undefined)).toEqual([]);
    expect(retries.filter((r) => r.status !== 201).map((r) => `${r.status} ${r.code ?? ''}`)).toEqual([]);
    expect(outcomes.length).toBeGreaterThan(answeredBeforeKill);
    expect(inFlightAtKill).toBeGreaterThan(0);
    expect(ready).toBe(true);
    expect(compareWithRows(accepted, persisted)).toEqual({ missing: [], duplicated: [], mismatched: [], extra: [], rejected: [] });
    expect(persisted.length).toBeLessThanOrEqual(STOCK);
  },
  90_000,
);

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(100);
  }
}
