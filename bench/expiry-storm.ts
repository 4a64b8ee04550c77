// The expiry storm (not a test): does expiry keep up with accepts? A rush of orders nobody pays,
// on a sale with a short payment window; a worker process (outbox persister, persist worker,
// expiry sweeper, as production runs it) gives the stock back. Reported: how late the worst unit
// and the last unit came back after their deadline (the item's stock sampled in Redis every
// 20 ms, judged by tools/expiry-lag.ts), the expiry rate (peak over 1 s, and the mean while
// draining), the worker's CPU per expired order, how long until Postgres said expired for every
// order, and what the orders cost in Redis memory (MEMORY USAGE over the namespace and its BullMQ
// queue, by key family) while pending and once final.
//
//   REDIS_URL=… DATABASE_URL=… npx tsx bench/expiry-storm.ts [--orders 20000] [--window 5]
//       [--rush 0] [--backlog]
//   npm run bench -- --expiry [--reps 0] [--expiry-orders 20000] [--expiry-window 5]   (the same run)
//
// --rush S spreads the orders over S seconds (0: as fast as 128 requests in flight go);
// --backlog starts the worker only after the last deadline, to measure the drain rate alone.
// Orders go straight through the reserve binding (no HTTP; the HTTP accept path is what the rest
// of `npm run bench` measures): the figures are about expiry.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createPool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { createLogger } from '../src/logger.ts';
import { Reservations } from '../src/orders/reservations.ts';
import { SaleCatalog } from '../src/sales/catalog.ts';
import { SaleRepository } from '../src/sales/repository.ts';
import { SalesService } from '../src/sales/sales-service.ts';
import { shardKeys } from '../src/stock/keys.ts';
import { defineScripts } from '../src/stock/scripts/registry.ts';
import { dropDatabase, withDatabase } from '../tools/databases.ts';
import { expiryLag, type StockSample } from '../tools/expiry-lag.ts';
import { findFreePort } from '../tools/free-port.ts';
import { REPO_ROOT, spawnTs, waitForHttp, type Child } from '../tools/processes.ts';
import { deleteServiceKeys } from '../tools/redis-keys.ts';
import { ticksToMicros, treeUsage } from './proc-cpu.ts';
import { describePerOrder, footprint, perOrder, type MemoryFootprint, type PerOrder } from './redis-memory.ts';

export interface ExpiryStormOptions {
  readonly orders: number;
  readonly windowSeconds: number;
  /** Spread the orders over this many seconds; 0: as fast as they go. */
  readonly rushSeconds?: number;
  /** Start the worker only after the last deadline (drain rate alone). */
  readonly backlog?: boolean;
  readonly redisUrl?: string;
  /** A server URL: the run makes a database of its own on it and drops it afterwards. */
  readonly postgresUrl?: string;
  /** Where the worker's log goes (default reports/bench). */
  readonly logDir?: string;
  readonly log?: (line: string) => void;
}

export interface ExpiryMemory {
  /** Before the first order (the sale, and the worker's queue when it runs). */
  readonly baseline: MemoryFootprint;
  /** Right after the last order was placed. */
  readonly pending: PerOrder;
  /** Once Postgres has every order expired (final orders' records linger until their TTL). */
  readonly final: PerOrder;
  /** False when the placement outlasted the window: some orders had expired already at the pending count. */
  readonly pendingMeasuredBeforeFirstDeadline: boolean;
}

export interface ExpiryStormResult {
  readonly orders: number;
  readonly rushMs: number;
  /** Accepted orders per second of rush. */
  readonly acceptRate: number;
  /** The longest any unit stayed held after its deadline. */
  readonly worstUnitLagMs: number;
  /** From the last deadline to every unit back. */
  readonly lastUnitLagMs: number;
  /** Expiries per second, the best 1 s window. */
  readonly peakExpiryRate: number;
  /** Expiries per second from the last sample before any unit came back to every unit back. */
  readonly meanExpiryRate: number;
  /** The worker process's CPU (user + system) per expired order. */
  readonly workerCpuMicrosPerOrder: number;
  /** From every unit back to every row expired in Postgres. */
  readonly persistedAfterMs: number;
  readonly expiredInPostgres: number;
  readonly backlog: boolean;
  readonly memory: ExpiryMemory;
}

const IN_FLIGHT = 128;
const SAMPLE_EVERY_MS = 20;
const SECRET = 'bench-secret-at-least-16-chars';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** User + system CPU of a process (and its children) so far, in µs. */
function cpuMicros(child: Child | undefined): number {
  const usage = child?.process.pid === undefined ? undefined : treeUsage(child.process.pid);
  return usage === undefined ? 0 : ticksToMicros(usage.ticks);
}

/** The best rate over any `windowMs` span of the samples, of expiries per second. */
function peakRate(stock: number, samples: readonly StockSample[], windowMs: number): number {
  const expired = samples.map((s) => ({ at: s.at, n: s.placed - (stock - s.available) }));
  let best = 0;
  let from = 0;
  for (let to = 0; to < expired.length; to++) {
    while (expired[to]!.at - expired[from]!.at > windowMs) from++;
    const span = expired[to]!.at - expired[from]!.at;
    if (span >= windowMs / 2) best = Math.max(best, ((expired[to]!.n - expired[from]!.n) * 1000) / span);
  }
  return best;
}

export async function runExpiryStorm(options: ExpiryStormOptions): Promise<ExpiryStormResult> {
  const { orders, windowSeconds } = options;
  const rushMs = (options.rushSeconds ?? 0) * 1000;
  const log = options.log ?? (() => undefined);
  const redisUrl = options.redisUrl ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const postgresUrl = options.postgresUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const tag = randomBytes(3).toString('hex');
  const prefix = `benchexp${tag}`;
  const dbUrl = withDatabase(postgresUrl, `flashsale_bench_expiry_${tag}`);
  await migrate({ databaseUrl: dbUrl });
  const logDir = options.logDir ?? join(REPO_ROOT, 'reports', 'bench');
  mkdirSync(logDir, { recursive: true });

  const redis = new Redis(redisUrl, { enableAutoPipelining: true });
  const sampler = new Redis(redisUrl);
  const pool = createPool({ databaseUrl: dbUrl });
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  let worker: Child | undefined;
  const startWorker = async () => {
    const metricsPort = await findFreePort();
    const env = {
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      REDIS_URL: redisUrl,
      REDIS_CLUSTER_NODES: '',
      DATABASE_URL: dbUrl,
      REDIS_PREFIX: prefix,
      JWT_SECRET: SECRET,
      METRICS_PORT: String(metricsPort),
    };
    const child = spawnTs('worker', 'src/main.ts', ['worker'], env, join(logDir, 'expiry-worker.log'));
    await waitForHttp(child, `http://127.0.0.1:${metricsPort}/metrics`);
    return child;
  };
  try {
    const scripts = defineScripts(redis, prefix);
    const logger = createLogger({ logLevel: 'warn' });
    const sales = new SalesService(new SaleRepository(pool), new SaleCatalog(scripts), { onDelisted() {}, onSaleKnown() {} }, logger);
    const saleId = `expiry-${tag}`;
    const now = Date.now();
    const created = await sales.create({
      id: saleId,
      name: 'expiry storm',
      startsAt: now - 60_000,
      endsAt: now + 3_600_000,
      currency: 'CNY',
      paymentWindowSeconds: windowSeconds,
      items: [{ sku: 'hot', name: 'Hot item', unitPrice: 100, stock: orders, perUserLimit: 1 }],
    });
    if (created === 'SALE_EXISTS') throw new Error('sale exists');
    if (!options.backlog) worker = await startWorker();
    const cpuBefore = cpuMicros(worker);
    const baseline = await footprint(redis, prefix);

    const itemKey = shardKeys(prefix, saleId, 'hot', 0).item;
    const reservations = new Reservations(scripts);
    const deadlines: number[] = [];
    const samples: StockSample[] = [];
    let stopSampling = false;
    const sampling = (async () => {
      while (!stopSampling) {
        const placed = deadlines.length;
        const at = Date.now();
        samples.push({ at, placed, available: Number(await sampler.hget(itemKey, 'available')) });
        await sleep(SAMPLE_EVERY_MS);
      }
    })();

    log(`placing ${orders} orders (window ${windowSeconds} s${rushMs ? `, over ${rushMs / 1000} s` : ''})…`);
    const started = Date.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < orders) {
          const ahead = (next / orders) * rushMs - (Date.now() - started);
          if (ahead > 0) await sleep(ahead);
          if (next >= orders) break;
          const i = next++;
          const result = await reservations.reserve({ saleId, sku: 'hot', userId: `shopper-${i}`, quantity: 1 });
          if (result.kind !== 'accepted') throw new Error(`order ${i} not accepted: ${JSON.stringify(result)}`);
          deadlines.push(result.order.expiresAt);
        }
      }),
    );
    const rushTook = Date.now() - started;
    const lastDeadline = Math.max(...deadlines);
    log(`placed in ${rushTook} ms (${Math.round((orders * 1000) / rushTook)}/s); last deadline in ${lastDeadline - Date.now()} ms`);
    // Pending orders (with their outbox entries, where the persister has not yet acknowledged them).
    // Expiries already under way mean the count is short: said so below rather than hidden.
    const pending = await footprint(redis, prefix);
    const pendingMeasuredBeforeFirstDeadline = Date.now() < Math.min(...deadlines);
    if (options.backlog) {
      await sleep(Math.max(0, lastDeadline - Date.now()));
      worker = await startWorker();
    }
    const cpuFrom = options.backlog ? cpuMicros(worker) : cpuBefore;

    const giveUp = lastDeadline + 60_000;
    while (Date.now() < giveUp && (samples.at(-1)?.available !== orders || samples.at(-1)?.placed !== orders)) await sleep(SAMPLE_EVERY_MS);
    const allBack = Date.now();
    const cpuUsed = cpuMicros(worker) - cpuFrom;
    stopSampling = true;
    await sampling;

    const lag = expiryLag(orders, deadlines, samples);
    if (lag.overReleased) throw new Error('more units came back than were taken');
    if (lag.allBackAt === undefined || lag.lastUnitLagMs === undefined) throw new Error(`not every unit came back within 60 s of the last deadline`);
    // The last sample with no unit back yet: expiries began after it (a sample later would
    // overstate the rate when one sweep brings everything back between two samples).
    const firstBackIndex = samples.findIndex((s) => s.available > orders - s.placed);
    const beforeFirstBack = samples[Math.max(0, firstBackIndex - 1)]?.at ?? lag.allBackAt;

    let persisted = 0;
    while (persisted < orders && Date.now() < allBack + 120_000) {
      persisted = Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM orders WHERE status = 'expired'")).rows[0]?.n ?? 0);
      if (persisted < orders) await sleep(50);
    }
    if (persisted !== orders) throw new Error(`Postgres has ${persisted} of ${orders} orders expired`);
    const persistedAfterMs = Date.now() - allBack;
    await sleep(1_000); // outbox acks and BullMQ clean-up settle
    const final = await footprint(redis, prefix);
    return {
      orders,
      rushMs: rushTook,
      acceptRate: (orders * 1000) / rushTook,
      worstUnitLagMs: lag.worstUnitLagMs,
      lastUnitLagMs: lag.lastUnitLagMs,
      peakExpiryRate: peakRate(orders, samples, 1_000),
      meanExpiryRate: (orders * 1000) / Math.max(SAMPLE_EVERY_MS, lag.allBackAt - beforeFirstBack),
      workerCpuMicrosPerOrder: cpuUsed / orders,
      persistedAfterMs,
      expiredInPostgres: persisted,
      backlog: options.backlog ?? false,
      memory: {
        baseline,
        pending: perOrder(baseline, pending, orders),
        final: perOrder(baseline, final, orders),
        pendingMeasuredBeforeFirstDeadline,
      },
    };
  } finally {
    await worker?.stop();
    await db.end();
    await pool.end();
    redis.disconnect();
    sampler.disconnect();
    await dropDatabase(dbUrl);
    await deleteServiceKeys(redisUrl, prefix);
  }
}

/** The run in a few lines, for the CLI and `npm run bench -- --expiry`. */
export function describeExpiryStorm(result: ExpiryStormResult): string {
  const { memory } = result;
  return [
    `expiry storm: ${result.orders} orders nobody pays, accepted at ${result.acceptRate.toFixed(0)}/s over ${result.rushMs} ms`,
    `expiry: peak ${result.peakExpiryRate.toFixed(0)}/s (1 s window), mean ${result.meanExpiryRate.toFixed(0)}/s from the first unit back to the last`,
    result.backlog
      ? 'lag: not measured with --backlog (the worker starts only after the last deadline)'
      : `lag: worst unit ${result.worstUnitLagMs} ms after its deadline; last unit ${result.lastUnitLagMs} ms after the last deadline`,
    `worker CPU ${result.workerCpuMicrosPerOrder.toFixed(0)} µs per expired order (sweeper + outbox persister + persist worker)`,
    `Postgres: all ${result.expiredInPostgres} orders expired ${result.persistedAfterMs} ms after the last unit was back`,
    `Redis memory (MEMORY USAGE, namespace + BullMQ): ${Math.round(memory.pending.bytes)} B per pending order` +
      (memory.pendingMeasuredBeforeFirstDeadline ? '' : ' (measured after the first deadline: some had expired; use a longer window)') +
      `, ${Math.round(memory.final.bytes)} B per final order (measured once Postgres holds them final: each order's record lives 10 more minutes, the shopper's order list a day)`,
    `  per pending order: ${describePerOrder(memory.pending)}`,
    `  per final order: ${describePerOrder(memory.final)}`,
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      orders: { type: 'string', default: '20000' },
      window: { type: 'string', default: '5' },
      rush: { type: 'string', default: '0' },
      backlog: { type: 'boolean', default: false },
    },
  });
  const result = await runExpiryStorm({
    orders: Number(values.orders),
    windowSeconds: Number(values.window),
    rushSeconds: Number(values.rush),
    backlog: values.backlog,
    log: (line) => console.log(line),
  });
  console.log(describeExpiryStorm(result));
  process.exit(0);
}
