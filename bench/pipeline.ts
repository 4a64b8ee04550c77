// Benchmark (not a test): what the persist pipeline costs and how fast it goes, against how fast
// the API accepts orders, on a private Redis and Postgres so that their CPU is ours alone.
//
//   npx tsx bench/pipeline.ts [--seconds 5] [--connections 64] [--runs 1] [--cpu-prof]
//   npx tsx bench/pipeline.ts --partitions 1,3 [--runs 3] [--orders 60000] [--streams 12] [--cluster]
//
// --partitions: persistence alone, P partitions and P worker processes per run, the counts
// alternated run by run (bench/persist-partitions.ts). --cluster: on a 3-master Redis Cluster
// (tools/redis-cluster.ts) instead of one Redis.
//
// Each run has two phases on the same servers:
// - drain: an API-only process takes a rush over real HTTP (autocannon) with no worker running, so
//   the outbox fills; then a worker-only process drains it into Postgres. Reported: reservations/s,
//   persisted/s (rows per second of drain), and CPU µs per persisted order of the worker, Redis and
//   Postgres (from /proc, counted from the first persisted row so the worker's start-up is left out).
// - live: API and worker run together through a second rush (the real deployment). Reported: the
//   CPU µs per accepted order of every process (API, worker, Redis, Postgres), and how long after
//   the last 201 Postgres held every order.
// Memory (Redis INFO used_memory deltas over the rush's orders): bytes per order while pending
// (order record, deadline, shopper's list, outbox entry, queue copies), and what is left per order
// once it is final and its record has expired (the records and deadlines are subtracted).
// `--cpu-prof` writes the worker's V8 profile to reports/bench/. Output goes to reports/bench/.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import pg from 'pg';
import { migrate } from '../src/db/migrate.ts';
import { withDatabase } from '../tools/databases.ts';
import { findFreePort } from '../tools/free-port.ts';
import { startLocalPostgres, startLocalRedis, type LocalServer } from '../tools/local-servers.ts';
import { REPO_ROOT, spawnTs, waitForHttp, type Child } from '../tools/processes.ts';
import { scanPages, servicePatterns } from '../tools/redis-keys.ts';
import { shardKeys } from '../src/stock/keys.ts';
import { saleBody } from '../tools/sale-body.ts';
import { startRedisCluster } from '../tools/redis-cluster.ts';
import { tokens as tokenMinter } from '../tools/tokens.ts';
import { benchPartitions } from './persist-partitions.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '64' },
    runs: { type: 'string', default: '1' },
    'cpu-prof': { type: 'boolean', default: false },
    partitions: { type: 'string' },
    orders: { type: 'string', default: '60000' },
    streams: { type: 'string', default: '12' },
    cluster: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);
const RUNS = Number(values.runs);
const SECRET = 'bench-secret-at-least-16-chars';
const mint = tokenMinter(SECRET);
const TICK_US = 1_000_000 / 100; // /proc/<pid>/stat counts in USER_HZ (100 on Linux)

const LOG_DIR = join(REPO_ROOT, 'reports', 'bench');
mkdirSync(LOG_DIR, { recursive: true });

/** utime + stime of a process, in µs (0 when it is gone). */
function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return 0;
  }
}

/** A server's CPU in µs: the main process and its children (Postgres backends). */
function serverCpu(server: LocalServer): number {
  let total = cpuOf(server.pid);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === server.pid) total += cpuOf(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

interface Servers {
  redis: LocalServer;
  postgres: LocalServer;
}

function startRole(role: 'api' | 'worker', env: Record<string, string>, nodeArgs: readonly string[] = []): Child {
  const settings = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    REDIS_CLUSTER_NODES: '',
    JWT_SECRET: SECRET,
    RATE_LIMIT_USER_PER_SEC: '0',
    SHED_EVENT_LOOP_DELAY_MS: '0',
    ...env,
  };
  // Node flags such as --cpu-prof are refused in NODE_OPTIONS; they go before the tsx loader.
  return spawnTs(role, 'src/main.ts', [role], settings, join(LOG_DIR, `${role}.log`), nodeArgs);
}

async function createSale(base: string, saleId: string): Promise<void> {
  const created = await fetch(`${base}/v1/admin/sales`, {
    method: 'POST',
    headers: { authorization: mint.admin(), 'content-type': 'application/json' },
    body: JSON.stringify(saleBody([{ sku: 'hot', unitPrice: 100, stock: 10_000_000, perUserLimit: 10_000 }], { id: saleId, name: 'bench' })),
  });
  if (created.status !== 201) throw new Error(`sale creation answered ${created.status}`);
}

const shopperTokens = Array.from({ length: 5000 }, (_, i) => mint.shopper(`u${i}`));

async function rush(base: string, saleId: string): Promise<number> {
  let next = 0;
  const result = await autocannon({
    url: base,
    connections: CONNECTIONS,
    duration: SECONDS,
    requests: [
      {
        method: 'POST',
        path: `/v1/sales/${saleId}/orders`,
        setupRequest: (request) => ({
          ...request,
          headers: { ...request.headers, 'content-type': 'application/json', authorization: shopperTokens[next++ % shopperTokens.length]! },
          body: JSON.stringify({ sku: 'hot', quantity: 1 }),
        }),
      },
    ],
  });
  return result.requests.total;
}

const usedMemory = async (redis: Redis) => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);

async function countRows(db: pg.Client, saleId: string): Promise<number> {
  return Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE sale_id = $1', [saleId])).rows[0]?.n ?? 0);
}

/** MEMORY USAGE of every key of the service's namespaces, summed by kind (the part after the sale's tag). */
async function bytesByKind(redis: Redis, prefix: string, orders: number): Promise<string> {
  const kinds = new Map<string, number>();
  for (const pattern of servicePatterns(prefix)) {
    for await (const keys of scanPages(redis, pattern)) {
      const pipeline = redis.pipeline();
      for (const key of keys) pipeline.memory('USAGE', key, 'SAMPLES', 0);
      const sizes = (await pipeline.exec()) ?? [];
      keys.forEach((key, i) => {
        const kind = key.startsWith('{') ? 'bullmq' : (key.split('}:')[1] ?? key).split(':')[0]!;
        kinds.set(kind, (kinds.get(kind) ?? 0) + Number(sizes[i]?.[1] ?? 0));
      });
    }
  }
  return [...kinds].sort((a, b) => b[1] - a[1]).map(([kind, bytes]) => `${kind} ${(bytes / orders).toFixed(0)}`).join(', ');
}

// The bench's sale has one item, 'hot', of one stock shard.
const hotShard = (prefix: string, saleId: string) => shardKeys(prefix, saleId, 'hot', 0);

async function acceptedIn(redis: Redis, prefix: string, saleId: string): Promise<number> {
  return Number((await redis.hget(hotShard(prefix, saleId).sale, 'ordersAccepted')) ?? 0);
}

async function outboxLengthOf(redis: Redis, prefix: string, saleId: string): Promise<number> {
  return redis.xlen(hotShard(prefix, saleId).outbox);
}

/** Bytes the order records and the deadline set hold: what expires or leaves once orders are final. */
async function recordBytes(redis: Redis, prefix: string, saleId: string): Promise<number> {
  const shard = hotShard(prefix, saleId);
  let bytes = Number((await redis.memory('USAGE', shard.deadlines, 'SAMPLES', 0)) ?? 0);
  // Order records: `…:order:<id>` under the shard's tag.
  for await (const keys of scanPages(redis, `${shard.order('')}*`)) {
    const pipeline = redis.pipeline();
    for (const key of keys) pipeline.memory('USAGE', key, 'SAMPLES', 0);
    for (const [, value] of (await pipeline.exec()) ?? []) bytes += Number(value);
  }
  return bytes;
}

/** INFO commandstats since the last RESETSTAT: the commands that took Redis's time, per order. */
async function commandCost(redis: Redis, orders: number): Promise<string> {
  const rows = [...(await redis.info('commandstats')).matchAll(/cmdstat_(\S+):calls=(\d+),usec=(\d+)/g)].map(([, name, calls, usec]) => ({
    name: name!,
    calls: Number(calls),
    usec: Number(usec),
  }));
  return rows
    .sort((a, b) => b.usec - a.usec)
    .slice(0, 6)
    .map((row) => `${row.name} ${(row.usec / orders).toFixed(2)} (${row.calls} calls)`)
    .join(', ');
}

interface RunResult {
  reservePerSecond: number;
  persistPerSecond: number;
  drainCpu: { worker: number; redis: number; postgres: number };
  liveCpu: { api: number; worker: number; redis: number; postgres: number };
  liveLagMs: number;
  bytesPending: number;
  bytesAfterPersist: number;
  bytesFinal: number;
}

async function run(servers: Servers, index: number): Promise<RunResult> {
  const tag = randomBytes(3).toString('hex');
  const prefix = `bench${tag}`;
  const dbUrl = withDatabase(servers.postgres.url, `flashsale_bench_${tag}`);
  await migrate({ databaseUrl: dbUrl, log: () => undefined });
  const [port, apiMetrics, workerMetrics] = [await findFreePort(), await findFreePort(), await findFreePort()];
  const env = { REDIS_URL: servers.redis.url, DATABASE_URL: dbUrl, REDIS_PREFIX: prefix };
  const base = `http://127.0.0.1:${port}`;
  const redis = new Redis(servers.redis.url);
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  // One file per thread (tsx's loader runs in a thread of its own): the biggest is the main thread.
  const cpuProf = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${join(LOG_DIR, `worker-${index}-${tag}`)}`] : [];
  let api = startRole('api', { ...env, PORT: String(port), METRICS_PORT: String(apiMetrics) });
  let worker: Child | undefined;
  try {
    await waitForHttp(api, `${base}/health/ready`);

    // Phase 1, drain: the outbox fills with no worker, then a worker empties it.
    const drainSale = `drain-${tag}`;
    await createSale(base, drainSale);
    const memoryBefore = await usedMemory(redis);
    const requests = await rush(base, drainSale);
    // Requests still in flight when the rush ends may yet be accepted: count once the API is gone.
    await api.stop();
    const accepted = await acceptedIn(redis, prefix, drainSale);
    const bytesPending = ((await usedMemory(redis)) - memoryBefore) / accepted;
    console.log(`drain: Redis bytes per order by key kind while pending: ${await bytesByKind(redis, prefix, accepted)}`);

    await redis.config('RESETSTAT');
    worker = startRole('worker', { ...env, METRICS_PORT: String(workerMetrics) }, cpuProf);
    const workerPid = worker.process.pid!;
    let first: { at: number; count: number; worker: number; redis: number; postgres: number } | undefined;
    let count = 0;
    const deadline = Date.now() + 300_000;
    while (count < accepted && Date.now() < deadline) {
      count = await countRows(db, drainSale);
      if (count > 0 && first === undefined) first = { at: Date.now(), count, worker: cpuOf(workerPid), redis: serverCpu(servers.redis), postgres: serverCpu(servers.postgres) };
      if (count < accepted) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (count !== accepted || first === undefined) throw new Error(`persisted ${count} of ${accepted}`);
    const drained = count - first.count;
    const drainSeconds = (Date.now() - first.at) / 1000;
    const drainCpu = {
      worker: (cpuOf(workerPid) - first.worker) / drained,
      redis: (serverCpu(servers.redis) - first.redis) / drained,
      postgres: (serverCpu(servers.postgres) - first.postgres) / drained,
    };
    // Let the outbox acknowledgements and queue bookkeeping settle before measuring what is left.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const outboxLength = await outboxLengthOf(redis, prefix, drainSale);
    if (outboxLength !== 0) throw new Error(`outbox still holds ${outboxLength} entries`);
    const memoryAfterPersist = await usedMemory(redis);
    const bytesAfterPersist = (memoryAfterPersist - memoryBefore) / accepted;
    const bytesFinal = (memoryAfterPersist - memoryBefore - (await recordBytes(redis, prefix, drainSale))) / accepted;
    console.log(`drain: Redis bytes per order by key kind once persisted: ${await bytesByKind(redis, prefix, accepted)}`);
    console.log(
      `drain: ${requests} requests, ${accepted} accepted in ${SECONDS}s; ${drained}+${first.count} rows in ${drainSeconds.toFixed(2)}s`,
    );
    console.log(`drain: Redis commands by time (µs per order): ${await commandCost(redis, accepted)}`);

    // Phase 2, live: API and worker together, as deployed.
    api = startRole('api', { ...env, PORT: String(port), METRICS_PORT: String(apiMetrics) });
    await waitForHttp(api, `${base}/health/ready`);
    const liveSale = `live-${tag}`;
    await createSale(base, liveSale);
    const apiPid = api.process.pid!;
    const before = { api: cpuOf(apiPid), worker: cpuOf(workerPid), redis: serverCpu(servers.redis), postgres: serverCpu(servers.postgres) };
    await rush(base, liveSale);
    const rushEnded = Date.now();
    // Requests in flight at the end are answered within milliseconds; count after them.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const liveAccepted = await acceptedIn(redis, prefix, liveSale);
    while ((await countRows(db, liveSale)) < liveAccepted && Date.now() < deadline + 60_000) await new Promise((resolve) => setTimeout(resolve, 10));
    const liveLagMs = Date.now() - rushEnded;
    const liveCpu = {
      api: (cpuOf(apiPid) - before.api) / liveAccepted,
      worker: (cpuOf(workerPid) - before.worker) / liveAccepted,
      redis: (serverCpu(servers.redis) - before.redis) / liveAccepted,
      postgres: (serverCpu(servers.postgres) - before.postgres) / liveAccepted,
    };
    console.log(`live: ${liveAccepted} accepted in ${SECONDS}s; all in Postgres ${liveLagMs} ms after the last answer`);
    return {
      reservePerSecond: accepted / SECONDS,
      persistPerSecond: drained / drainSeconds,
      drainCpu,
      liveCpu,
      liveLagMs,
      bytesPending,
      bytesAfterPersist,
      bytesFinal,
    };
  } finally {
    await api.stop();
    await worker?.stop();
    await db.end();
    redis.disconnect();
  }
}

if (values.partitions !== undefined) {
  const postgres = await startLocalPostgres();
  const single = values.cluster ? undefined : await startLocalRedis();
  const cluster = values.cluster ? await startRedisCluster({ masters: 3, replicasPerMaster: 0 }) : undefined;
  try {
    await benchPartitions({
      redisUrl: single?.url ?? `redis://${cluster!.masters()[0]!.address}`,
      clusterNodes: cluster?.seedNodes,
      redisPids: single ? [single.pid] : cluster!.nodes.map((node) => node.pid),
      postgresUrl: postgres.url,
      postgresPid: postgres.pid,
      partitionCounts: values.partitions.split(',').map(Number),
      reps: RUNS,
      orders: Number(values.orders),
      streams: Number(values.streams),
      env: { NODE_ENV: 'production', LOG_LEVEL: 'warn', JWT_SECRET: SECRET },
      logDir: LOG_DIR,
    });
  } finally {
    await Promise.all([single?.stop(), cluster?.stop(), postgres.stop()]);
  }
  process.exit(0);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const servers: Servers = { redis: await startLocalRedis(), postgres: await startLocalPostgres() };
const results: RunResult[] = [];
try {
  for (let i = 0; i < RUNS; i++) results.push(await run(servers, i));
} finally {
  await Promise.all([servers.redis.stop(), servers.postgres.stop()]);
}
const f = (n: number, width = 7) => n.toFixed(0).padStart(width);
console.log('\n         drain                                    | live: CPU µs per accepted order               |  Redis B/order');
console.log('reserve/s persist/s ratio  µs: worker redis  pg  all |  api worker redis   pg  all  lag ms | pending persisted final');
for (const r of results) {
  const d = r.drainCpu;
  const l = r.liveCpu;
  console.log(
    `${f(r.reservePerSecond, 9)} ${f(r.persistPerSecond, 9)} ${(r.persistPerSecond / r.reservePerSecond).toFixed(2).padStart(5)}× ${f(d.worker, 10)} ${f(d.redis, 5)} ${f(d.postgres, 3)} ${f(d.worker + d.redis + d.postgres, 4)} | ${f(l.api, 4)} ${f(l.worker, 6)} ${f(l.redis, 5)} ${f(l.postgres, 4)} ${f(l.api + l.worker + l.redis + l.postgres, 4)} ${f(r.liveLagMs, 7)} | ${f(r.bytesPending, 7)} ${f(r.bytesAfterPersist, 9)} ${f(r.bytesFinal, 5)}`,
  );
}
if (results.length > 1) {
  console.log(
    `median: reserve ${f(median(results.map((r) => r.reservePerSecond)), 0)}/s, persist ${f(median(results.map((r) => r.persistPerSecond)), 0)}/s, ` +
      `drain CPU ${f(median(results.map((r) => r.drainCpu.worker + r.drainCpu.redis + r.drainCpu.postgres)), 0)} µs/order`,
  );
}
console.log(`autocannon in this process, ${CONNECTIONS} connections, ${SECONDS}s rushes; private Redis and Postgres; one 2-core machine shared with other work`);
