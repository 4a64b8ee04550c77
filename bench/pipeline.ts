// Benchmark (not a test): how fast the pipeline persists orders against how fast the API accepts
// them, measured in one run, and what an order costs in Redis memory once persisted.
//
//   REDIS_URL=… DATABASE_URL=… npx tsx bench/pipeline.ts [--seconds 10] [--connections 64] [--runs 3]
//
// Each run: an API-only process takes a rush over real HTTP (autocannon) with no worker running,
// so the outbox fills; then a worker-only process starts and drains it into Postgres. Reported:
// reservations/s (accepted 201s per second of rush), persisted orders/s (rows per second of
// drain), their ratio, and the median over runs. The processes' output goes to reports/bench/.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import pg from 'pg';
import { migrate } from '../src/db/migrate.ts';
import { dropDatabase, withDatabase } from '../tools/databases.ts';
import { findFreePort } from '../tools/free-port.ts';
import { REPO_ROOT, spawnTs, waitForHttp, type Child } from '../tools/processes.ts';
import { deleteServiceKeys } from '../tools/redis-keys.ts';
import { saleBody } from '../tools/sale-body.ts';
import { tokens as tokenMinter } from '../tools/tokens.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
  },
});
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);
const RUNS = Number(values.runs);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SECRET = 'bench-secret-at-least-16-chars';
const mint = tokenMinter(SECRET);

const LOG_DIR = join(REPO_ROOT, 'reports', 'bench');
mkdirSync(LOG_DIR, { recursive: true });

/** One role of the service as its own process, its output in reports/bench/<role>.log. */
function startRole(role: 'api' | 'worker', env: Record<string, string>): Child {
  const settings = { NODE_ENV: 'production', LOG_LEVEL: 'warn', REDIS_CLUSTER_NODES: '', JWT_SECRET: SECRET, RATE_LIMIT_USER_PER_SEC: '0', ...env };
  return spawnTs(role, 'src/main.ts', [role], settings, join(LOG_DIR, `${role}.log`));
}

interface RunResult {
  accepted: number;
  reservePerSecond: number;
  persistPerSecond: number;
  bytesPerPendingOrder: number;
  bytesPerFinishedOrder: number;
}

async function run(): Promise<RunResult> {
  const tag = randomBytes(3).toString('hex');
  const prefix = `bench${tag}`;
  const dbUrl = withDatabase(POSTGRES_URL, `flashsale_bench_${tag}`);
  await migrate({ databaseUrl: dbUrl });
  const [port, apiMetrics, workerMetrics] = [await findFreePort(), await findFreePort(), await findFreePort()];
  const env = { REDIS_URL, DATABASE_URL: dbUrl, REDIS_PREFIX: prefix };
  const api = startRole('api', { ...env, PORT: String(port), METRICS_PORT: String(apiMetrics) });
  const base = `http://127.0.0.1:${port}`;
  const redis = new Redis(REDIS_URL);
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  try {
    await waitForHttp(api, `${base}/health/ready`);
    const saleId = `bench-${tag}`;
    const created = await fetch(`${base}/v1/admin/sales`, {
      method: 'POST',
      headers: { authorization: mint.admin(), 'content-type': 'application/json' },
      body: JSON.stringify(saleBody([{ sku: 'hot', unitPrice: 100, stock: 10_000_000, perUserLimit: 10_000 }], { id: saleId, name: 'bench' })),
    });
    if (created.status !== 201) throw new Error(`sale creation answered ${created.status}`);

    // A pool of shoppers; each request takes the next token.
    const tokens = Array.from({ length: 5000 }, (_, i) => mint.shopper(`u${i}`));
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
            headers: { ...request.headers, 'content-type': 'application/json', authorization: tokens[next++ % tokens.length]! },
            body: JSON.stringify({ sku: 'hot', quantity: 1 }),
          }),
        },
      ],
    });
    const accepted = Number((await redis.hget(`${prefix}:{${saleId}}:sale`, 'ordersAccepted')) ?? 0);
    await api.stop();

    // Drain: a worker alone moves the filled outbox into Postgres.
    const worker = startRole('worker', { ...env, METRICS_PORT: String(workerMetrics) });
    let firstAt = 0;
    let firstCount = 0;
    let count = 0;
    const deadline = Date.now() + 300_000;
    while (count < accepted && Date.now() < deadline) {
      count = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM orders')).rows[0]?.n ?? 0);
      if (count > 0 && firstAt === 0) {
        firstAt = Date.now();
        firstCount = count;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const drainSeconds = (Date.now() - firstAt) / 1000;
    await worker.stop();
    if (count !== accepted) throw new Error(`persisted ${count} of ${accepted}`);

    // Memory: what one order holds while pending, and what outlives it once finished and persisted
    // (its record expires 10 min after a final status; the idempotency key and list entry remain).
    const sample = (await redis.zrange(`${prefix}:{${saleId}}:deadlines`, 0, 199));
    let orderBytes = 0;
    for (const id of sample) orderBytes += Number(await redis.memory('USAGE', `${prefix}:{${saleId}}:order:${id}`, 'SAMPLES', 0));
    orderBytes /= sample.length;
    const deadlinesBytes = Number(await redis.memory('USAGE', `${prefix}:{${saleId}}:deadlines`, 'SAMPLES', 0)) / accepted;
    let userOrdersBytes = 0;
    for (let i = 0; i < 100; i++) userOrdersBytes += Number((await redis.memory('USAGE', `${prefix}:{${saleId}}:user-orders:u${i}`, 'SAMPLES', 0)) ?? 0);
    const perUserZsetPerOrder = userOrdersBytes / 100 / (accepted / tokens.length);
    const outboxLength = await redis.xlen(`${prefix}:{${saleId}}:outbox`);
    if (outboxLength !== 0) throw new Error(`outbox still holds ${outboxLength} entries`);
    console.log(
      `run: ${result.requests.total} requests, ${accepted} accepted in ${SECONDS}s; drained ${count - firstCount}+${firstCount} rows in ${drainSeconds.toFixed(2)}s`,
    );
    return {
      accepted,
      reservePerSecond: accepted / SECONDS,
      persistPerSecond: (count - firstCount) / drainSeconds,
      bytesPerPendingOrder: orderBytes + deadlinesBytes + perUserZsetPerOrder,
      bytesPerFinishedOrder: perUserZsetPerOrder,
    };
  } finally {
    await api.stop();
    await db.end();
    redis.disconnect();
    // The bench's database and keys (the BullMQ queue's too) go with it.
    await dropDatabase(dbUrl);
    await deleteServiceKeys(REDIS_URL, prefix);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results: RunResult[] = [];
for (let i = 0; i < RUNS; i++) results.push(await run());
const row = (r: RunResult) =>
  `${r.reservePerSecond.toFixed(0).padStart(8)} ${r.persistPerSecond.toFixed(0).padStart(10)} ${(r.persistPerSecond / r.reservePerSecond).toFixed(2).padStart(7)}× ${r.bytesPerPendingOrder.toFixed(0).padStart(9)} ${r.bytesPerFinishedOrder.toFixed(0).padStart(10)}`;
console.log('\nreserve/s  persist/s   ratio  B/pending  B/finished');
for (const r of results) console.log(row(r));
console.log(
  `median: reserve ${median(results.map((r) => r.reservePerSecond)).toFixed(0)}/s, persist ${median(results.map((r) => r.persistPerSecond)).toFixed(0)}/s, ratio ${median(results.map((r) => r.persistPerSecond / r.reservePerSecond)).toFixed(2)}×`,
);
console.log(`load generator: autocannon in this process, ${CONNECTIONS} connections, ${SECONDS}s rush; API and worker as separate processes, one at a time, on this machine`);
