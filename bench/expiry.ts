// The expiry storm (`npm run bench -- --expiry`): N orders placed by distinct shoppers on a sale
// with a short payment window, none paid. Reported: how fast they were placed, how long after the
// last order's deadline every unit was back on sale (polled through GET /v1/sales/:id, whose
// `available` may lag by up to 1 s), the expiry throughput that implies, and what the orders cost
// in Redis memory: MEMORY USAGE summed over the service's keys (its prefix and its BullMQ keys),
// by key family, before the orders, while they are pending, and once they are final and persisted.
import { Redis } from 'ioredis';
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminSigner, createSale, ORDER_BODY, startBenchService } from './targets.ts';
import { runWrk } from './wrk.ts';
import { scanPages, servicePatterns } from '../tools/redis-keys.ts';

export interface ExpiryOptions {
  readonly redisUrl: string;
  readonly postgresUrl: string;
  readonly jwtSecret: string;
  readonly logDir: string;
  readonly serviceEnv: Readonly<Record<string, string>>;
  readonly tokensFile: string;
  readonly users: number;
  readonly orders: number;
  readonly windowSeconds: number;
  readonly connections: number;
  readonly log: (line: string) => void;
}

export interface MemoryFootprint {
  /** Every key but the rate limiter's (per request, gone within a second): what orders hold. */
  readonly bytes: number;
  readonly rateLimitBytes: number;
  readonly keys: number;
  readonly byFamily: Readonly<Record<string, { readonly keys: number; readonly bytes: number }>>;
  /** INFO memory used_memory: the whole Redis, so other users of it show up here too. */
  readonly usedMemory: number;
}

export interface ExpiryResult {
  readonly orders: number;
  readonly windowSeconds: number;
  readonly placedSeconds: number;
  readonly placedPerSecond: number;
  readonly firstDeadline: string;
  readonly lastDeadline: string;
  /** From the last deadline until GET /v1/sales/:id showed every unit available again; null = timed out. */
  readonly allBackAfterLastDeadlineMs: number | null;
  /** Orders expired per second, from the first deadline until all were back (bounded by how fast they were placed). */
  readonly expiredPerSecond: number | null;
  readonly expiredInPostgres: number;
  readonly memory: {
    readonly baseline: MemoryFootprint;
    readonly pending: MemoryFootprint;
    readonly final: MemoryFootprint;
    readonly bytesPerPendingOrder: number;
    readonly bytesPerFinalOrder: number;
    readonly pendingMeasuredBeforeFirstDeadline: boolean;
  };
  readonly summary: string;
}

const SALE = 'bench-expiry';
const TIMEOUT_MS = 120_000;

/** Collapses ids so keys group by what they are: order:<id>, user-orders:<user>, bull jobs, … */
function keyFamily(key: string, prefix: string): string {
  return key
    .replace(`{${prefix}:bull}`, '{bull}')
    .replace(`${prefix}:`, '')
    .replace(/\{[^}]*\}/, (tag) => (tag === '{bull}' ? tag : '{sale}'))
    .replace(/:[^:]*\|[^:]*(?=:|$)/g, ':<job>') // BullMQ job ids: sale|first entry|last entry|count
    .replace(/shopper-\d+/g, '<user>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')
    .replace(/:\d+(?=:|$)/g, ':<n>')
    .replace(/:[0-9A-Za-z_-]{16,}$/, ':<id>');
}

async function footprint(redis: Redis, prefix: string): Promise<MemoryFootprint> {
  const keys: string[] = [];
  for (const pattern of servicePatterns(prefix)) for await (const page of scanPages(redis, pattern)) keys.push(...page);
  const byFamily: Record<string, { keys: number; bytes: number }> = {};
  let bytes = 0;
  let rateLimitBytes = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    const batch = keys.slice(i, i + 1000);
    const pipeline = redis.pipeline();
    for (const key of batch) pipeline.memory('USAGE', key, 'SAMPLES', 0);
    const results = (await pipeline.exec()) ?? [];
    batch.forEach((key, j) => {
      const size = Number(results[j]?.[1] ?? 0); // a key that expired meanwhile answers null
      const family = keyFamily(key, prefix);
      const entry = (byFamily[family] ??= { keys: 0, bytes: 0 });
      entry.keys += 1;
      entry.bytes += size;
      if (family.startsWith('rate-')) rateLimitBytes += size;
      else bytes += size;
    });
  }
  const usedMemory = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);
  return { bytes, rateLimitBytes, keys: keys.length, byFamily, usedMemory };
}

/** The largest key families as bytes per order, e.g. "order:<id> 344 B, user-orders:<user> 168 B". */
function perOrderBreakdown(memory: MemoryFootprint, orders: number): string {
  return Object.entries(memory.byFamily)
    .filter(([family]) => !family.startsWith('rate-'))
    .sort(([, a], [, b]) => b.bytes - a.bytes)
    .slice(0, 5)
    .map(([family, entry]) => `${family.replace('{sale}:', '')} ${Math.round(entry.bytes / Math.max(1, orders))} B`)
    .join(', ');
}

async function availableNow(origin: string): Promise<number> {
  const response = await fetch(`${origin}/v1/sales/${SALE}`);
  const body = (await response.json()) as { items?: { available?: number }[] };
  return Number(body.items?.[0]?.available ?? -1);
}

export async function runExpiryStorm(options: ExpiryOptions): Promise<ExpiryResult> {
  const service = await startBenchService(options);
  const redis = new Redis(options.redisUrl);
  const db = new pg.Client({ connectionString: service.databaseUrl });
  try {
    await db.connect();
    // Slack over the even share, so a shopper whose attempt was refused (429, 503) can still buy later.
    const perUser = 2 * Math.ceil(options.orders / options.users);
    await createSale(service.origin, adminSigner(options.jwtSecret)(), {
      id: SALE,
      stock: options.orders,
      perUserLimit: Math.min(10_000, perUser),
      paymentWindowSeconds: options.windowSeconds,
    });
    const baseline = await footprint(redis, service.redisPrefix);

    // Exactly N orders: wrk stops at the N-th 201 (stock N also stops it, and a unit that expires
    // before then would be sold again, so the placement must finish inside the window).
    const placed = await runWrk({
      url: service.origin,
      path: `/v1/sales/${SALE}/orders`,
      body: ORDER_BODY,
      tokensFile: options.tokensFile,
      seconds: Math.max(options.windowSeconds * 3, 30),
      connections: options.connections,
      threads: 1,
      stopAfter201: options.orders,
    });
    const pending = await footprint(redis, service.redisPrefix);
    const pendingMeasuredAt = Date.now();
    const sold = placed.statuses['201'] ?? 0;
    options.log(`expiry: placed ${sold} orders in ${placed.seconds.toFixed(1)} s (${Math.round(sold / placed.seconds)}/s), ${JSON.stringify(placed.statuses)}`);

    // Deadlines come from Postgres once every order is there.
    const deadlineOf = async () => {
      const row = (
        await db.query<{ n: string; first: Date | null; last: Date | null }>(
          'SELECT count(*) AS n, min(expires_at) AS first, max(expires_at) AS last FROM orders WHERE sale_id = $1',
          [SALE],
        )
      ).rows[0];
      return { n: Number(row?.n ?? 0), first: row?.first ?? null, last: row?.last ?? null };
    };
    const started = Date.now();
    let deadlines = await deadlineOf();
    while (deadlines.n < sold && Date.now() - started < TIMEOUT_MS) {
      await sleep(100);
      deadlines = await deadlineOf();
    }
    if (!deadlines.first || !deadlines.last) throw new Error('expiry: no orders reached Postgres');
    const [firstDeadline, lastDeadline] = [deadlines.first.getTime(), deadlines.last.getTime()];

    let allBackAt: number | null = null;
    while (Date.now() - lastDeadline < TIMEOUT_MS) {
      if ((await availableNow(service.origin)) === options.orders) {
        allBackAt = Date.now();
        break;
      }
      await sleep(50);
    }
    // Final: every order expired in Redis and in Postgres (the persist pipeline carries the status change).
    let expiredInPostgres = 0;
    const finalDeadline = Date.now() + TIMEOUT_MS;
    while (Date.now() < finalDeadline) {
      expiredInPostgres = Number(
        (await db.query<{ n: string }>("SELECT count(*) AS n FROM orders WHERE sale_id = $1 AND status = 'expired'", [SALE])).rows[0]?.n ?? 0,
      );
      if (expiredInPostgres >= sold) break;
      await sleep(200);
    }
    await sleep(1_000); // outbox acks and BullMQ clean-up settle
    const final = await footprint(redis, service.redisPrefix);

    const allBackAfterLastDeadlineMs = allBackAt === null ? null : allBackAt - lastDeadline;
    const expiredPerSecond = allBackAt === null ? null : sold / ((allBackAt - firstDeadline) / 1000);
    const bytesPerPendingOrder = (pending.bytes - baseline.bytes) / Math.max(1, sold);
    const bytesPerFinalOrder = (final.bytes - baseline.bytes) / Math.max(1, sold);
    const summary =
      `Expiry storm: ${sold.toLocaleString('en-US')} orders placed in ${placed.seconds.toFixed(1)} s, payment window ${options.windowSeconds} s, none paid; ` +
      `every unit back on sale ${allBackAfterLastDeadlineMs === null ? 'NOT within the timeout' : `${allBackAfterLastDeadlineMs} ms after the last deadline`} ` +
      `(${expiredPerSecond === null ? '–' : Math.round(expiredPerSecond).toLocaleString('en-US')} expiries/s from the first deadline; GET /v1/sales may lag ≤ 1 s); ` +
      `${expiredInPostgres.toLocaleString('en-US')} expired in Postgres. Redis memory (MEMORY USAGE over the service's keys): ` +
      `${Math.round(bytesPerPendingOrder)} bytes per pending order` +
      `${pendingMeasuredAt < firstDeadline ? '' : ' (measured after the first deadline: placing took longer than the window, some had expired; use a longer --expiry-window)'}, ` +
      `${Math.round(bytesPerFinalOrder)} bytes per final order ` +
      `(records of final orders expire 10 minutes later). Largest per pending order: ${perOrderBreakdown(pending, sold)}; ` +
      `per final order: ${perOrderBreakdown(final, sold)}.`;
    return {
      orders: sold,
      windowSeconds: options.windowSeconds,
      placedSeconds: placed.seconds,
      placedPerSecond: sold / placed.seconds,
      firstDeadline: new Date(firstDeadline).toISOString(),
      lastDeadline: new Date(lastDeadline).toISOString(),
      allBackAfterLastDeadlineMs,
      expiredPerSecond,
      expiredInPostgres,
      memory: {
        baseline,
        pending,
        final,
        bytesPerPendingOrder,
        bytesPerFinalOrder,
        pendingMeasuredBeforeFirstDeadline: pendingMeasuredAt < firstDeadline,
      },
      summary,
    };
  } finally {
    redis.disconnect();
    await db.end().catch(() => undefined);
    await service.stop();
    await service.cleanup();
  }
}
