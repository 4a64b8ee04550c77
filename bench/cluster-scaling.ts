// `npm run bench:cluster`: scaling figures on a real 3-master Redis Cluster (no replicas: this
// measures throughput, not durability), in one run:
//   reserve     one hot item with 1, 2 and 4 stock shards (each its own sale, shards placed on as
//               many masters as they can be), reps alternated, driven by wrk; orders/s, p50/p99,
//               and CPU µs per order of each process (API role, worker role, each redis-server,
//               Postgres) read from /proc over the load and the persistence catch-up after it;
//   persistence orders placed with the worker stopped, then a worker started with
//               PERSIST_PARTITIONS = P (1 or 3) worker processes started with P partitions drain
//               them into Postgres: rows/s, counted from the workers' start (each partition
//               count a deployment of its own: prefix and database, since partitions are fixed
//               per deployment).
// Writes reports/bench-cluster/report.json and prints the Markdown table for README.
//
//   npm run bench:cluster -- [--reps 3] [--shards 1,2,4] [--seconds 8] [--warmup 2] [--connections 64]
//                            [--api-processes 2] [--persist-orders 20000] [--persist-reps 2]
//
// Uses DATABASE_URL (a Postgres server: the bench creates and drops its own databases).
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { migrate } from '../src/db/migrate.ts';
import { shardTag, tagHex } from '../src/stock/keys.ts';
import { createDatabase, dropDatabase } from '../tools/databases.ts';
import { findFreePort } from '../tools/free-port.ts';
import { REPO_ROOT, spawnTs, waitForHttp, type Child } from '../tools/processes.ts';
import { slotOf, startRedisCluster, type RedisCluster } from '../tools/redis-cluster.ts';
import { tokens } from '../tools/tokens.ts';
import { postmasterPid } from './probes.ts';
import { ticksToMicros, treeUsage } from './proc-cpu.ts';
import { median } from './report.ts';
import { runWrk, wrkVersion, type WrkResult } from './wrk.ts';

const JWT_SECRET = 'bench-secret-at-least-16-chars';
const SKU = 'item';
const ORDER_BODY = JSON.stringify({ sku: SKU, quantity: 1 });
const CATCH_UP_TIMEOUT_MS = 60_000;

interface Options {
  readonly reps: number;
  /** The hot item's shard counts to compare (default 1, 2, 4). */
  readonly shardCounts: readonly number[];
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly connections: number;
  readonly apiProcesses: number;
  readonly users: number;
  readonly persistOrders: number;
  readonly persistReps: number;
  readonly postgresUrl: string;
  readonly outDir: string;
}

/** A deployment: its own prefix and database, an API role (API_PROCESSES processes) and a worker role. */
interface Deployment {
  readonly origin: string;
  readonly databaseUrl: string;
  readonly api: Child;
  workers: Child[];
  /** Spawns `count` worker processes (they share the persistence partitions out); `ready` when all serve metrics. */
  startWorkers(count: number): { children: Child[]; ready: Promise<void> };
  stopWorkers(): Promise<void>;
  stop(): Promise<void>;
}

async function deploy(cluster: RedisCluster, options: Options, logDir: string, env: Record<string, string>, withWorker: boolean): Promise<Deployment> {
  const tag = randomBytes(4).toString('hex');
  const databaseUrl = await createDatabase(options.postgresUrl, `bench_cluster_${tag}`);
  await migrate({ databaseUrl });
  const common = {
    NODE_ENV: 'production',
    REDIS_CLUSTER_NODES: cluster.seedNodes,
    REDIS_PREFIX: `bc${tag}`,
    DATABASE_URL: databaseUrl,
    JWT_SECRET,
    LOG_LEVEL: 'warn',
    // The bench's shoppers are few and fast; the per-user limit of 10/s is not the subject here.
    RATE_LIMIT_USER_PER_SEC: '0',
    // Capacity, not latency protection: shedding would turn the saturated runs' excess into 503s.
    SHED_EVENT_LOOP_DELAY_MS: '0',
    ...env,
  };
  const port = await findFreePort();
  const api = spawnTs('api', 'src/main.ts', ['api'], { ...common, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: String(await findFreePort()), API_PROCESSES: String(options.apiProcesses) }, join(logDir, `api-${tag}.log`));
  const origin = `http://127.0.0.1:${port}`;
  await waitForHttp(api, `${origin}/health/ready`);
  // Metrics ports for the workers this deployment may start (found now: spawning stays synchronous).
  const metricsPorts = await Promise.all(Array.from({ length: 4 }, () => findFreePort()));
  const deployment: Deployment = {
    origin,
    databaseUrl,
    api,
    workers: [],
    startWorkers(count) {
      const started = metricsPorts.splice(0, count).map((metrics, i) => ({
        metrics,
        child: spawnTs(`worker-${i + 1}`, 'src/main.ts', ['worker'], { ...common, METRICS_PORT: String(metrics) }, join(logDir, `worker-${tag}-${metrics}.log`)),
      }));
      deployment.workers.push(...started.map((w) => w.child));
      const ready = Promise.all(started.map((w) => waitForHttp(w.child, `http://127.0.0.1:${w.metrics}/metrics`))).then(() => undefined);
      return { children: started.map((w) => w.child), ready };
    },
    async stopWorkers() {
      await Promise.all(deployment.workers.map((worker) => worker.stop()));
      deployment.workers = [];
    },
    async stop() {
      await deployment.stopWorkers();
      await api.stop();
      await dropDatabase(databaseUrl);
    },
  };
  if (withWorker) await deployment.startWorkers(1).ready;
  return deployment;
}

async function admin(origin: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${origin}${path}`, {
    method,
    headers: { authorization: tokens(JWT_SECRET).admin('bench-operator'), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

async function createSale(origin: string, id: string, stockShards: number): Promise<void> {
  const now = Date.now();
  const item = { sku: SKU, name: 'Hot item', unitPrice: 100, stock: 100_000_000, perUserLimit: 10_000, ...(stockShards > 1 && { stockShards }) };
  const created = await admin(origin, 'POST', '/v1/admin/sales', {
    id,
    name: id,
    currency: 'CNY',
    paymentWindowSeconds: 3_600,
    startsAt: new Date(now - 1_000).toISOString(),
    endsAt: new Date(now + 2 * 3_600_000).toISOString(),
    items: [item],
  });
  if (created.status !== 201) throw new Error(`creating sale ${id} answered ${created.status}: ${JSON.stringify(created.json)}`);
}

const shardSlot = (saleId: string, shard: number) => slotOf(`{s${tagHex(shardTag(saleId, SKU, shard))}}`);

/**
 * A sale id `<stem>-<n>` whose item's K shards sit on min(K, masters) masters, as evenly as they
 * can (K = 4 on 3 masters: 2 + 1 + 1); with `partitions`, whose shard tags also cover every partition.
 */
async function placedSale(cluster: RedisCluster, stem: string, shards: number, partitions = 1): Promise<{ id: string; masters: number[] }> {
  const owner = new Map<number, number>();
  for (const master of cluster.masters()) for (const [first, last] of master.slots) for (let s = first; s <= last; s++) owner.set(s, master.port);
  const want = Math.min(shards, cluster.masters().length);
  for (let n = 0; n < 100_000; n++) {
    const id = `${stem}-${n}`;
    const ports = Array.from({ length: shards }, (_, k) => owner.get(shardSlot(id, k))!);
    const perMaster = [...new Set(ports)].map((p) => ports.filter((q) => q === p).length);
    const covered = new Set(Array.from({ length: shards }, (_, k) => shardTag(id, SKU, k) % partitions)).size;
    if (perMaster.length === want && Math.max(...perMaster) - Math.min(...perMaster) <= 1 && covered === Math.min(partitions, shards)) {
      return { id, masters: ports };
    }
  }
  throw new Error(`no sale id ${stem}-<n> places ${shards} shards on ${want} masters`);
}

async function rowsOf(databaseUrl: string, saleId: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE sale_id = $1', [saleId])).rows[0]?.n ?? 0);
  } finally {
    await client.end();
  }
}

/** Polls until Postgres holds `expected` rows of the sale; ms from `since`, or null after the timeout. */
async function caughtUp(databaseUrl: string, saleId: string, expected: number, since: number): Promise<number | null> {
  for (;;) {
    if ((await rowsOf(databaseUrl, saleId)) >= expected) return Date.now() - since;
    if (Date.now() - since > CATCH_UP_TIMEOUT_MS) return null;
    await sleep(50);
  }
}

/** Polls the sale's rows every 20 ms: from the first poll that sees rows to the one that sees all, rows and ms. */
async function drainTimes(databaseUrl: string, saleId: string, expected: number, onFirstRows: () => void): Promise<{ rows: number; ms: number } | undefined> {
  const deadline = Date.now() + CATCH_UP_TIMEOUT_MS;
  let first: { rows: number; at: number } | undefined;
  for (;;) {
    const rows = await rowsOf(databaseUrl, saleId);
    const at = performance.now();
    if (first === undefined && rows > 0) {
      first = { rows, at };
      onFirstRows();
    }
    if (rows >= expected && first !== undefined) return { rows: expected - first.rows, ms: at - first.at };
    if (Date.now() > deadline) return undefined;
    await sleep(20);
  }
}

interface Probe {
  readonly name: string;
  readonly pid: number;
}

function cpuTicks(probes: readonly Probe[]): Map<string, { ticks: number; waitMicros: number }> {
  return new Map(
    probes.map((probe) => {
      const usage = treeUsage(probe.pid);
      if (usage === undefined) throw new Error(`${probe.name} (pid ${probe.pid}) is gone`);
      return [probe.name, { ticks: usage.ticks, waitMicros: usage.runQueueWaitMicros }];
    }),
  );
}

interface ReserveRun {
  readonly rep: number;
  readonly shards: number;
  readonly saleId: string;
  readonly wrk: WrkResult;
  readonly ordersPerSecond: number;
  readonly unexpected: Record<string, number>;
  readonly catchUpMs: number | null;
  /** CPU µs per order (201) of each process, over the load and the catch-up after it. */
  readonly microsPerOrder: Record<string, number>;
  /** Share of one core each process used over the load window (busy), and waited for a CPU. */
  readonly percentOfOneCore: Record<string, number>;
  readonly runQueueWaitPercent: Record<string, number>;
}

interface PersistRun {
  readonly rep: number;
  readonly partitions: number;
  readonly orders: number;
  readonly drainMs: number | null;
  readonly rowsPerSecond: number;
  readonly workerMicrosPerRow: number;
  readonly postgresMicrosPerRow: number;
}

async function reserveRun(
  deployment: Deployment,
  sale: { id: string; shards: number },
  rep: number,
  probes: readonly Probe[],
  options: Options,
  tokensFile: string,
  placed: Map<string, number>,
): Promise<ReserveRun> {
  const wrkRun = { url: deployment.origin, path: `/v1/sales/${sale.id}/orders`, body: ORDER_BODY, tokensFile, connections: options.connections, threads: 1 };
  if (options.warmupSeconds > 0) {
    const warm = await runWrk({ ...wrkRun, seconds: options.warmupSeconds });
    placed.set(sale.id, (placed.get(sale.id) ?? 0) + (warm.statuses['201'] ?? 0));
    await caughtUp(deployment.databaseUrl, sale.id, placed.get(sale.id)!, Date.now());
    await sleep(300);
  }
  const before = cpuTicks(probes);
  const started = process.hrtime.bigint();
  const wrk = await runWrk({ ...wrkRun, seconds: options.seconds });
  const loadMicros = Number(process.hrtime.bigint() - started) / 1000;
  const middle = cpuTicks(probes);
  const orders = wrk.statuses['201'] ?? 0;
  placed.set(sale.id, (placed.get(sale.id) ?? 0) + orders);
  const catchUpMs = await caughtUp(deployment.databaseUrl, sale.id, placed.get(sale.id)!, wrk.endedAt);
  const after = cpuTicks(probes);
  const microsPerOrder: Record<string, number> = {};
  const percentOfOneCore: Record<string, number> = {};
  const runQueueWaitPercent: Record<string, number> = {};
  for (const { name } of probes) {
    microsPerOrder[name] = ticksToMicros(after.get(name)!.ticks - before.get(name)!.ticks) / Math.max(1, orders);
    percentOfOneCore[name] = (100 * ticksToMicros(middle.get(name)!.ticks - before.get(name)!.ticks)) / loadMicros;
    runQueueWaitPercent[name] = (100 * (middle.get(name)!.waitMicros - before.get(name)!.waitMicros)) / loadMicros;
  }
  microsPerOrder.wrk = wrk.cpuMicros / Math.max(1, orders);
  percentOfOneCore.wrk = wrk.cpuPercentOfOneCore;
  const unexpected = Object.fromEntries(Object.entries(wrk.statuses).filter(([status]) => status !== '201'));
  return { rep, shards: sale.shards, saleId: sale.id, wrk, ordersPerSecond: orders / wrk.seconds, unexpected, catchUpMs, microsPerOrder, percentOfOneCore, runQueueWaitPercent };
}

async function persistRun(cluster: RedisCluster, options: Options, logDir: string, partitions: number, rep: number, tokensFile: string, pgPid: number): Promise<PersistRun> {
  const deployment = await deploy(cluster, options, logDir, { PERSIST_PARTITIONS: String(partitions) }, false);
  try {
    // Shards on every master and, with 3 partitions, in every partition.
    const sale = await placedSale(cluster, `persist-p${partitions}-r${rep}`, 4, 3);
    await createSale(deployment.origin, sale.id, 4);
    const wrk = await runWrk({
      url: deployment.origin,
      path: `/v1/sales/${sale.id}/orders`,
      body: ORDER_BODY,
      tokensFile,
      seconds: 60,
      connections: options.connections,
      threads: 1,
      stopAfter201: options.persistOrders,
    });
    const orders = wrk.statuses['201'] ?? 0;
    await sleep(500); // let the last replies' outbox entries land
    const pgBefore = treeUsage(pgPid)!.ticks;
    // One worker process per partition: partitions are what workers share out. Timed from the
    // first rows seen to the last, so the processes' start-up is not counted as draining.
    const { children, ready } = deployment.startWorkers(partitions);
    const workerTicks = () => children.reduce((sum, w) => sum + (treeUsage(w.process.pid!)?.ticks ?? 0), 0);
    // The workers' CPU from the first rows on: their start-up (loading, compiling) is not draining.
    let workerAtFirstRows = 0;
    const drain = await drainTimes(deployment.databaseUrl, sale.id, orders, () => (workerAtFirstRows = workerTicks()));
    const workerSpent = workerTicks() - workerAtFirstRows;
    await ready;
    const pgTicks = treeUsage(pgPid)!.ticks - pgBefore;
    return {
      rep,
      partitions,
      orders,
      drainMs: drain?.ms ?? null,
      rowsPerSecond: drain === undefined ? 0 : (drain.rows * 1000) / Math.max(1, drain.ms),
      workerMicrosPerRow: ticksToMicros(workerSpent) / Math.max(1, orders),
      postgresMicrosPerRow: ticksToMicros(pgTicks) / Math.max(1, orders),
    };
  } finally {
    await deployment.stop();
  }
}

/** The issue's target: Alibaba's published 2020 peak, with one hot item taking 30 % of it. */
const TARGET_ORDERS_PER_SECOND = 583_000;
const HOT_SHARE = 0.3;
/** Cores are planned to run at most this busy: headroom for bursts, GC pauses and failovers. */
const UTILISATION = 0.7;

export interface CapacityPlan {
  /**
   * Median CPU µs per order of each role over every reserve run; Redis: of the master holding the
   * single shard in the K = 1 runs (the other masters' share there is idle polling, not orders).
   */
  readonly microsPerOrder: { readonly api: number; readonly worker: number; readonly redis: number; readonly postgres: number };
  /** Orders/s one Redis core sustains at UTILISATION (each order's Redis work is on its shard's master). */
  readonly ordersPerRedisCore: number;
  readonly cores: { readonly api: number; readonly worker: number; readonly redis: number; readonly postgres: number };
  /** Stock shards the hot item needs (its orders/s ÷ one Redis core's rate), each on a master of its own. */
  readonly hotShards: number;
}

/** Cores per role for TARGET_ORDERS_PER_SECOND from the measured CPU per order (docs/capacity.md explains it). */
export function capacityPlan(reserve: readonly ReserveRun[], hotMaster: string): CapacityPlan {
  const med = (pick: (run: ReserveRun) => number) => median(reserve.map(pick));
  const microsPerOrder = {
    api: med((r) => r.microsPerOrder.api!),
    worker: med((r) => r.microsPerOrder.worker!),
    redis: median(reserve.filter((r) => r.shards === 1).map((r) => r.microsPerOrder[hotMaster]!)),
    postgres: med((r) => r.microsPerOrder.postgres!),
  };
  const cores = (micros: number) => Math.ceil((TARGET_ORDERS_PER_SECOND * micros) / 1e6 / UTILISATION);
  const ordersPerRedisCore = (1e6 / microsPerOrder.redis) * UTILISATION;
  return {
    microsPerOrder,
    ordersPerRedisCore,
    cores: { api: cores(microsPerOrder.api), worker: cores(microsPerOrder.worker), redis: cores(microsPerOrder.redis), postgres: cores(microsPerOrder.postgres) },
    hotShards: Math.ceil((TARGET_ORDERS_PER_SECOND * HOT_SHARE) / ordersPerRedisCore),
  };
}

const int = (value: number) => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–');

function markdown(reserve: readonly ReserveRun[], persist: readonly PersistRun[], redisNames: readonly string[], shardCounts: readonly number[]): string {
  const lines = [
    `| hot item's shards | orders/s (median) | vs 1 shard | p50 / p99 ms | µs CPU per order: API | worker | ${redisNames.join(' | ')} | Postgres | wrk |`,
    `|---|---|---|---|---|---|${redisNames.map(() => '---|').join('')}---|---|`,
  ];
  const base = median(reserve.filter((r) => r.shards === 1).map((r) => r.ordersPerSecond));
  for (const shards of shardCounts) {
    const mine = reserve.filter((r) => r.shards === shards);
    if (mine.length === 0) continue;
    const med = (pick: (run: ReserveRun) => number) => median(mine.map(pick));
    const rate = med((r) => r.ordersPerSecond);
    lines.push(
      `| ${shards} | ${int(rate)} | ${(rate / base).toFixed(2)}× | ${med((r) => r.wrk.latencyMs.p50).toFixed(1)} / ${med((r) => r.wrk.latencyMs.p99).toFixed(1)} | ` +
        `${int(med((r) => r.microsPerOrder.api!))} | ${int(med((r) => r.microsPerOrder.worker!))} | ` +
        `${redisNames.map((name) => int(med((r) => r.microsPerOrder[name]!))).join(' | ')} | ${int(med((r) => r.microsPerOrder.postgres!))} | ${int(med((r) => r.microsPerOrder.wrk!))} |`,
    );
  }
  if (persist.length > 0) {
    lines.push('', '| persist partitions | rows/s into Postgres (median) | worker µs per row | Postgres µs per row |', '|---|---|---|---|');
    for (const partitions of [1, 3]) {
      const mine = persist.filter((r) => r.partitions === partitions);
      if (mine.length === 0) continue;
      const med = (pick: (run: PersistRun) => number) => median(mine.map(pick));
      lines.push(`| ${partitions} | ${int(med((r) => r.rowsPerSecond))} | ${int(med((r) => r.workerMicrosPerRow))} | ${int(med((r) => r.postgresMicrosPerRow))} |`);
    }
  }
  return lines.join('\n');
}

function describeRun(run: ReserveRun, redisNames: readonly string[]): string {
  const cpu = (name: string) => `${name} ${int(run.microsPerOrder[name]!)} (${int(run.percentOfOneCore[name]!)}%${run.runQueueWaitPercent[name] === undefined ? '' : `, wait ${int(run.runQueueWaitPercent[name])}%`})`;
  const odd = Object.keys(run.unexpected).length > 0 ? ` UNEXPECTED ${JSON.stringify(run.unexpected)}` : '';
  return (
    `rep ${run.rep} K=${run.shards} ${int(run.ordersPerSecond).padStart(6)} orders/s p50 ${run.wrk.latencyMs.p50.toFixed(1)} p99 ${run.wrk.latencyMs.p99.toFixed(1)} ms | ` +
    `µs/order (busy % of a core) ${['api', 'worker', ...redisNames, 'postgres', 'wrk'].map(cpu).join(' ')} | caught up ${run.catchUpMs ?? 'NO'} ms${odd}`
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '3' },
      shards: { type: 'string', default: '1,2,4' },
      seconds: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '64' },
      'api-processes': { type: 'string', default: '2' },
      users: { type: 'string', default: '20000' },
      'persist-orders': { type: 'string', default: '20000' },
      'persist-reps': { type: 'string', default: '2' },
      out: { type: 'string', default: join(REPO_ROOT, 'reports', 'bench-cluster') },
    },
  });
  const num = (name: string, value: string | undefined, min = 1) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`);
    return n;
  };
  const options: Options = {
    reps: num('reps', values.reps),
    shardCounts: (values.shards ?? '').split(',').map((k) => num('shards', k)),
    seconds: num('seconds', values.seconds),
    warmupSeconds: num('warmup', values.warmup, 0),
    connections: num('connections', values.connections),
    apiProcesses: num('api-processes', values['api-processes']),
    users: num('users', values.users),
    persistOrders: num('persist-orders', values['persist-orders']),
    persistReps: num('persist-reps', values['persist-reps'], 0),
    postgresUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    outDir: resolve(values.out),
  };
  const tool = wrkVersion();
  const logDir = join(options.outDir, 'logs');
  await mkdir(logDir, { recursive: true });
  const tokensFile = join(options.outDir, 'tokens.txt');
  const minted = tokens(JWT_SECRET);
  await writeFile(tokensFile, `${Array.from({ length: options.users }, (_, i) => minted.shopper(`shopper-${i}`).replace(/^Bearer /, '')).join('\n')}\n`);
  const loadBefore = loadavg();

  const cluster = await startRedisCluster({ replicasPerMaster: 0 });
  const reserve: ReserveRun[] = [];
  const persist: PersistRun[] = [];
  const masters = cluster.masters().sort((a, b) => a.slots[0]![0] - b.slots[0]![0]);
  const redisNames = masters.map((_, i) => `redis-${i + 1}`);
  const pgPid = await postmasterPid(options.postgresUrl);
  let singleShardMaster = redisNames[0]!;
  try {
    const deployment = await deploy(cluster, options, logDir, {}, true);
    try {
      const sales: { id: string; shards: number; on: string[] }[] = [];
      for (const shards of options.shardCounts) {
        const placed = await placedSale(cluster, `hot-k${shards}`, shards);
        await createSale(deployment.origin, placed.id, shards);
        const on = placed.masters.map((port) => redisNames[masters.findIndex((m) => m.port === port)]!);
        console.log(`K=${shards}: sale ${placed.id}, shards on ${on.join(', ')}`);
        sales.push({ id: placed.id, shards, on });
        if (shards === 1) singleShardMaster = on[0]!;
      }
      const probes: Probe[] = [
        { name: 'api', pid: deployment.api.process.pid! },
        { name: 'worker', pid: deployment.workers[0]!.process.pid! },
        ...masters.map((m, i) => ({ name: redisNames[i]!, pid: m.pid })),
        { name: 'postgres', pid: pgPid },
      ];
      const placed = new Map<string, number>();
      for (let rep = 1; rep <= options.reps; rep++) {
        // Each rep starts one shard count later, so none always runs first.
        for (let i = 0; i < sales.length; i++) {
          const sale = sales[(i + rep - 1) % sales.length]!;
          const run = await reserveRun(deployment, sale, rep, probes, options, tokensFile, placed);
          reserve.push(run);
          console.log(describeRun(run, redisNames));
        }
      }
      // Redis state of the reserve runs goes with the deployment's prefix; the persistence runs get fresh ones.
      for (const sale of sales) console.log(`K=${sale.shards} sale ${sale.id}: ${placed.get(sale.id) ?? 0} orders placed`);
    } finally {
      await deployment.stop();
    }
    for (let rep = 1; rep <= options.persistReps; rep++) {
      for (const partitions of rep % 2 === 1 ? [1, 3] : [3, 1]) {
        const run = await persistRun(cluster, options, logDir, partitions, rep, tokensFile, pgPid);
        persist.push(run);
        console.log(
          `persist rep ${rep} partitions ${partitions}: ${run.orders} orders drained in ${run.drainMs === null ? 'NO' : Math.round(run.drainMs)} ms = ${int(run.rowsPerSecond)} rows/s ` +
            `(worker ${int(run.workerMicrosPerRow)} µs/row, Postgres ${int(run.postgresMicrosPerRow)} µs/row)`,
        );
      }
    }
  } finally {
    await cluster.stop();
  }
  const table = markdown(reserve, persist, redisNames, options.shardCounts);
  const plan = reserve.some((r) => r.shards === 1) ? capacityPlan(reserve, singleShardMaster) : undefined;
  const report = {
    generatedAt: new Date().toISOString(),
    settings: { ...options, postgresUrl: undefined },
    machine: { cpus: cpus().length, loadAverageBefore: loadBefore, loadAverageAfter: loadavg() },
    loadGenerator: tool,
    reserve,
    persist,
    markdown: table,
    capacityPlan: plan,
  };
  const file = join(options.outDir, 'report.json');
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\n${table}\n`);
  if (plan) {
    const m = plan.microsPerOrder;
    console.log(
      `capacity for ${int(TARGET_ORDERS_PER_SECOND)} orders/s at ${UTILISATION * 100} % busy: µs/order API ${int(m.api)}, worker ${int(m.worker)}, Redis ${int(m.redis)}, Postgres ${int(m.postgres)} → ` +
        `cores API ${plan.cores.api}, worker ${plan.cores.worker}, Redis ${plan.cores.redis} (${int(plan.ordersPerRedisCore)} orders/s per Redis core), Postgres ${plan.cores.postgres}; ` +
        `hot item (${HOT_SHARE * 100} %) needs ${plan.hotShards} shards\n`,
    );
  }
  console.log(`report: ${file}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : error);
    process.exit(1);
  });
}
