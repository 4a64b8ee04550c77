// Persistence throughput with P partitions and P worker processes (bench/pipeline.ts --partitions
// 1,3): the outbox streams of a sale's item shards are filled directly in Redis (what reserves
// would have written), then the sale appears in Postgres, and the workers (already holding their
// partition leases, one each) drain the streams into Postgres. Reported per run: persisted
// orders/s from the first row to the last, and CPU µs per order of each worker process, Redis and
// Postgres, from /proc. Runs alternate between the partition counts, so drift (other work on the
// machine, a warming disk) falls on each alike.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import { migrate } from '../src/db/migrate.ts';
import { createPool } from '../src/db/pool.ts';
import { partitionOf } from '../src/orders/outbox-streams.ts';
import { leaseKey } from '../src/orders/partition-leases.ts';
import { SaleRepository } from '../src/sales/repository.ts';
import type { SaleDefinition } from '../src/sales/sale.ts';
import { shardKeys } from '../src/stock/keys.ts';
import { mintOrderId } from '../src/stock/order-id.ts';
import { withDatabase } from '../tools/databases.ts';
import { findFreePort } from '../tools/free-port.ts';
import { REPO_ROOT, spawnTs, type Child } from '../tools/processes.ts';
import { ticksToMicros, treeUsage } from './proc-cpu.ts';

export interface PartitionBenchOptions {
  readonly redisUrl: string;
  /** "host:port,…" of a Redis Cluster (REDIS_CLUSTER_NODES); the single Redis at redisUrl otherwise. */
  readonly clusterNodes: string | undefined;
  readonly postgresUrl: string;
  /** PIDs whose process trees are Redis and Postgres, for their CPU (undefined: not measured). */
  readonly redisPids: readonly number[];
  readonly postgresPid: number | undefined;
  readonly partitionCounts: readonly number[];
  readonly reps: number;
  readonly orders: number;
  /** Streams (items of one shard each), chosen so that every partition count gets an even share. */
  readonly streams: number;
  readonly env: Record<string, string>;
  readonly logDir: string;
}

interface PartitionRun {
  partitions: number;
  orders: number;
  perSecond: number;
  /** CPU µs per persisted order, per worker process. */
  workers: number[];
  redis: number | undefined;
  postgres: number | undefined;
}

const cpuMicros = (pid: number) => ticksToMicros(treeUsage(pid)?.ticks ?? 0);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** SKUs whose single shard's tags spread evenly over the partitions of every count given. */
function balancedSkus(saleId: string, streams: number, counts: readonly number[]): string[] {
  const skus: string[] = [];
  const used = new Map<string, number>();
  for (let n = 0; skus.length < streams && n < 100_000; n++) {
    const sku = `item-${n}`;
    const tag = shardKeys('', saleId, sku, 0).tag;
    const fits = counts.every((count) => (used.get(`${count}:${partitionOf(tag, count)}`) ?? 0) < Math.ceil(streams / count));
    if (!fits) continue;
    for (const count of counts) used.set(`${count}:${partitionOf(tag, count)}`, (used.get(`${count}:${partitionOf(tag, count)}`) ?? 0) + 1);
    skus.push(sku);
  }
  return skus;
}

async function fill(redis: Redis | Cluster, prefix: string, saleId: string, skus: readonly string[], orders: number): Promise<void> {
  const now = Date.now();
  await Promise.all(
    skus.map(async (sku, s) => {
      const keys = shardKeys(prefix, saleId, sku, 0);
      const count = Math.floor(orders / skus.length) + (s < orders % skus.length ? 1 : 0);
      // Each stream is one slot: one pipeline per stream works on a cluster too.
      for (let from = 0; from < count; from += 1_000) {
        const pipeline = redis.pipeline();
        for (let i = from; i < Math.min(count, from + 1_000); i++) {
          pipeline.xadd(keys.outbox, '*', 'id', mintOrderId(keys.tag), 'sku', sku, 'userId', `u${s}-${i}`, 'quantity', '1', 'unitPrice', '100',
            'amount', '100', 'status', 'pending_payment', 'createdAt', String(now), 'expiresAt', String(now + 3_600_000), 'idempotencyKey', '');
        }
        await pipeline.exec();
      }
    }),
  );
}

async function countRows(db: pg.Client, saleId: string): Promise<number> {
  return Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE sale_id = $1', [saleId])).rows[0]?.n ?? 0);
}

async function runOnce(options: PartitionBenchOptions, partitions: number, index: number): Promise<PartitionRun> {
  const tag = randomBytes(3).toString('hex');
  const prefix = `benchp${tag}`;
  const dbUrl = withDatabase(options.postgresUrl, `flashsale_benchp_${tag}`);
  await migrate({ databaseUrl: dbUrl, log: () => undefined });
  const redis = options.clusterNodes
    ? new Cluster(options.clusterNodes.split(',').map((seed) => ({ host: seed.split(':')[0]!, port: Number(seed.split(':')[1]) })))
    : new Redis(options.redisUrl);
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  const pool = createPool({ databaseUrl: dbUrl } as Parameters<typeof createPool>[0]);
  const workers: Child[] = [];
  try {
    const env = {
      ...options.env,
      REDIS_URL: options.redisUrl,
      REDIS_CLUSTER_NODES: options.clusterNodes ?? '',
      DATABASE_URL: dbUrl,
      REDIS_PREFIX: prefix,
      PERSIST_PARTITIONS: String(partitions),
    };
    for (let w = 0; w < partitions; w++) {
      workers.push(spawnTs(`worker-${w}`, 'src/main.ts', ['worker'], { ...env, METRICS_PORT: String(await findFreePort()) }, join(options.logDir, `partitions-worker-${w}.log`)));
    }
    // Every partition leased, each by another process: the fair shares have settled.
    const settleBy = Date.now() + 60_000;
    for (;;) {
      const holders = await Promise.all(Array.from({ length: partitions }, (_, i) => redis.get(leaseKey(prefix, i))));
      if (holders.every(Boolean) && new Set(holders).size === partitions) break;
      if (Date.now() > settleBy) throw new Error(`partition leases did not settle: ${holders.join(', ')}; ${workers[0]!.tail()}`);
      await sleep(200);
    }

    const saleId = `p${partitions}-${tag}`;
    const skus = balancedSkus(saleId, options.streams, options.partitionCounts);
    await fill(redis, prefix, saleId, skus, options.orders);
    const now = Date.now();
    const sale: SaleDefinition = {
      id: saleId, name: 'bench', startsAt: now - 60_000, endsAt: now + 3_600_000, currency: 'EUR', paymentWindowSeconds: 900,
      items: skus.map((sku) => ({ sku, name: sku, unitPrice: 100, stock: options.orders, perUserLimit: 10 })),
    };
    // The workers see the sale (and its streams) once it is in Postgres.
    if (!(await new SaleRepository(pool).insert(sale))) throw new Error('sale not inserted');

    const pids = workers.map((worker) => worker.process.pid!);
    let first: { at: number; count: number; workers: number[]; redis: number; postgres: number } | undefined;
    let count = 0;
    const deadline = Date.now() + 300_000;
    const redisCpu = () => options.redisPids.reduce((sum, pid) => sum + cpuMicros(pid), 0);
    const postgresCpu = () => (options.postgresPid === undefined ? 0 : cpuMicros(options.postgresPid));
    while (count < options.orders && Date.now() < deadline) {
      count = await countRows(db, saleId);
      if (count > 0 && first === undefined) first = { at: Date.now(), count, workers: pids.map(cpuMicros), redis: redisCpu(), postgres: postgresCpu() };
      if (count < options.orders) await sleep(20);
    }
    if (count !== options.orders || first === undefined) throw new Error(`persisted ${count} of ${options.orders}`);
    const drained = count - first.count;
    const seconds = (Date.now() - first.at) / 1000;
    const result: PartitionRun = {
      partitions,
      orders: drained,
      perSecond: drained / seconds,
      workers: pids.map((pid, w) => (cpuMicros(pid) - first.workers[w]!) / drained),
      redis: options.redisPids.length > 0 ? (redisCpu() - first.redis) / drained : undefined,
      postgres: options.postgresPid === undefined ? undefined : (postgresCpu() - first.postgres) / drained,
    };
    console.log(
      `run ${index}: ${partitions} partition(s), ${skus.length} streams, ${drained}+${first.count} rows in ${seconds.toFixed(2)}s: ` +
        `${result.perSecond.toFixed(0)}/s; CPU µs/order workers [${result.workers.map((w) => w.toFixed(0)).join(', ')}]` +
        (result.redis === undefined ? '' : `, Redis ${result.redis.toFixed(0)}`) +
        (result.postgres === undefined ? '' : `, Postgres ${result.postgres.toFixed(0)}`),
    );
    return result;
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await pool.end();
    await db.end();
    redis.disconnect();
  }
}

export async function benchPartitions(options: PartitionBenchOptions): Promise<void> {
  const runs: PartitionRun[] = [];
  for (let rep = 0; rep < options.reps; rep++) {
    const order = rep % 2 === 0 ? options.partitionCounts : [...options.partitionCounts].reverse();
    for (const partitions of order) runs.push(await runOnce(options, partitions, runs.length));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const f = (n: number | undefined, width: number) => (n === undefined ? '-' : n.toFixed(0)).padStart(width);
  console.log('\npartitions  persisted/s (median, all runs)             CPU µs/order: workers (sum)  Redis  Postgres');
  for (const partitions of options.partitionCounts) {
    const mine = runs.filter((run) => run.partitions === partitions);
    const workersSum = mine.map((run) => run.workers.reduce((a, b) => a + b, 0));
    console.log(
      `${f(partitions, 10)}  ${f(median(mine.map((run) => run.perSecond)), 9)}  [${mine.map((run) => run.perSecond.toFixed(0)).join(', ')}]`.padEnd(58) +
        `${f(median(workersSum), 18)}  ${f(median(mine.map((run) => run.redis ?? 0)), 5)}  ${f(median(mine.map((run) => run.postgres ?? 0)), 8)}`,
    );
  }
  console.log(
    `${options.orders} orders over ${options.streams} shard streams per run, one worker process per partition; ` +
      `${options.clusterNodes ? `Redis Cluster ${options.clusterNodes}` : 'one Redis'}; repo ${REPO_ROOT}`,
  );
}
