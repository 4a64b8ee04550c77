// Crash safety of the writers: a worker SIGKILLed while its batches are in flight (their upserts
// held on a row lock the test owns) leaves their outbox entries pending under its name; a new
// worker claims them once idle for 2 s (QUEUE_LOCK_DURATION_MS) and writes them again, and Postgres
// holds every accepted order exactly once — whether the dead worker's orphaned statement still
// commits after its death or is aborted, and however often the same batch loses its worker.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { OUTBOX_GROUP } from '../../../src/orders/outbox-persister.ts';
import { createPersistQueue, type PersistQueue } from '../../../src/orders/queue.ts';
import { shardKeysOfSale } from '../../support/sale-state.ts';
import {
  createSale,
  drive,
  expectExactlyPersisted,
  killAllRoles,
  Ledger,
  orderRequests,
  outboxDrained,
  startRole,
  startStack,
  summarise,
  type RoleProcess,
  type Stack,
} from './harness.ts';

let stack: Stack;
let api: RoleProcess;
let persistQueue: { queue: PersistQueue; close(): Promise<void> };
let redis: Redis;
beforeAll(async () => {
  stack = await startStack();
  api = await startRole(stack, 'api');
  persistQueue = createPersistQueue(loadConfig(stack.env({ LOG_LEVEL: 'silent' })));
  redis = new Redis(stack.redisUrl);
});
afterAll(async () => {
  redis?.disconnect();
  await persistQueue?.close();
  await killAllRoles();
  await stack?.stop();
});

async function connect(databaseUrl: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Holds the sale's `sale_items` rows locked, so every batch upsert of the sale waits on it. */
async function lockItems(saleId: string): Promise<{ release(): Promise<void> }> {
  const holder = await connect(stack.databaseUrl);
  await holder.query('BEGIN');
  await holder.query('SELECT sold FROM sale_items WHERE sale_id = $1 FOR UPDATE', [saleId]);
  return {
    async release() {
      await holder.query('ROLLBACK');
      await holder.end();
    },
  };
}

/** Backends of this database waiting on a lock: the writers' upserts held behind the test's lock. */
async function lockWaiters(): Promise<number[]> {
  return (await lockWaitersWithXids()).map((waiter) => waiter.pid);
}

async function lockWaitersWithXids(): Promise<{ pid: number; xid: string | null }[]> {
  const db = await connect(stack.databaseUrl);
  try {
    const { rows } = await db.query<{ pid: number; xid: string | null }>(
      "SELECT pid, backend_xid::text AS xid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    );
    return rows;
  } finally {
    await db.end();
  }
}

/** How many of the sale's order rows were inserted by the given transactions. */
async function rowsWrittenBy(saleId: string, xids: readonly string[]): Promise<number> {
  const db = await connect(stack.databaseUrl);
  try {
    const { rows } = await db.query<{ count: string }>('SELECT count(*) FROM orders WHERE sale_id = $1 AND xmin::text = ANY($2)', [saleId, xids]);
    return Number(rows[0]?.count ?? 0);
  } finally {
    await db.end();
  }
}

/** Ends the given backends, as Postgres does when it notices their client is gone: their statements roll back. */
async function terminate(pids: readonly number[]): Promise<void> {
  const db = await connect(stack.databaseUrl);
  try {
    await db.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
  } finally {
    await db.end();
  }
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** The sale's outbox entries read and not yet acknowledged: [entry id, consumer] in id order. */
async function inFlight(saleId: string): Promise<[string, string][]> {
  const shards = await shardKeysOfSale(redis, stack.prefix, saleId);
  const pending = await Promise.all(
    shards.map(async ({ outbox }) => (await redis.xpending(outbox, OUTBOX_GROUP, '-', '+', 100_000).catch(() => [])) as [string, string][]),
  );
  return pending.flat().map(([id, consumer]) => [id, consumer]);
}

const consumerOf = (worker: RoleProcess) => `${hostname()}-${worker.pid}`;

/** Waits until a worker has read every entry of the sale and its writes are blocked in Postgres;
 *  returns the entries in flight and the blocked backends. */
async function inFlightAndBlocked(saleId: string): Promise<{ entryIds: string[]; waiters: number[] }> {
  const shards = await shardKeysOfSale(redis, stack.prefix, saleId);
  const length = (await Promise.all(shards.map(({ outbox }) => redis.xlen(outbox)))).reduce((sum, n) => sum + n, 0);
  return until('batches in flight, blocked in Postgres', 20_000, async () => {
    const [pending, waiters] = await Promise.all([inFlight(saleId), lockWaiters()]);
    if (pending.length < length || waiters.length === 0) return undefined;
    return { entryIds: pending.map(([id]) => id), waiters };
  });
}

/** Waits until every entry is acknowledged and deleted and BullMQ has nothing to do. */
async function drained(saleId: string): Promise<Record<string, number>> {
  expect(await outboxDrained(redis, stack.prefix, saleId, 30_000)).toEqual({ total: 0, length: 0 });
  return until('the queue to drain', 30_000, async () => {
    const counts = await persistQueue.queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
    return (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) === 0 ? counts : undefined;
  });
}

async function failedReasons(): Promise<string[]> {
  return (await persistQueue.queue.getFailed()).map((job) => `${job.id ?? '?'}: ${job.failedReason}`);
}

async function placeAll(saleId: string, count: number): Promise<Ledger> {
  const ledger = new Ledger();
  const outcomes = await drive(() => api.baseUrl, saleId, orderRequests(stack.secret, ['phone', 'tablet'], count), {
    concurrency: 32,
    retries: 40,
    onOutcome: (request, outcome) => ledger.record(request, outcome),
  }).done;
  expect(summarise(outcomes.values())).toEqual({ accepted: count });
  return ledger;
}

/** Worker roles started by the running test, killed when it ends (the API stays for the next test). */
const workers: RoleProcess[] = [];
async function startWorker(): Promise<RoleProcess> {
  const worker = await startRole(stack, 'worker');
  workers.push(worker);
  return worker;
}
async function killWorkers(): Promise<void> {
  await Promise.all(workers.splice(0).map((worker) => worker.kill('SIGKILL')));
}

const ITEMS = [
  { sku: 'phone', stock: 10_000 },
  { sku: 'tablet', stock: 10_000 },
];

/**
 * Orders first (the persister then makes big batches), a worker whose batches block on the test's
 * lock, SIGKILL while they are in flight, a new worker that retries them behind the dead worker's
 * statements (still held in Postgres), then the lock is let go. Postgres commits such an orphaned
 * statement when its results still fit its output buffer, and aborts it when sending them to the
 * dead client fails first; either way every 201 must end as exactly one row.
 */
async function killWhileActive(orders: number, label: string): Promise<{ writtenByDead: number; accepted: number }> {
  const saleId = await createSale(api.baseUrl, stack.secret, ITEMS);
  const lock = await lockItems(saleId);
  try {
    const ledger = await placeAll(saleId, orders);
    const first = await startWorker();
    const { entryIds, waiters } = await inFlightAndBlocked(saleId);
    const deadXids = (await lockWaitersWithXids()).flatMap((waiter) => (waiter.xid === null ? [] : [waiter.xid]));
    await first.kill('SIGKILL');
    // The dead worker's entries are still pending under its name: nobody will finish them but a new worker.
    expect(await inFlight(saleId)).toEqual(entryIds.map((id) => [id, consumerOf(first)]));

    await startWorker();
    // The new worker claims the entries once idle for 2 s and writes them again: its own upserts
    // then queue behind the dead worker's, still waiting in Postgres.
    const retried = await until('the new worker to retry the stalled batches', 20_000, async () => {
      const now = await lockWaiters();
      return now.some((pid) => !waiters.includes(pid)) ? now : undefined;
    });
    await lock.release();

    const persisted = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 30_000);
    // Every entry acknowledged and deleted; nothing handed to BullMQ as refused.
    const counts = await drained(saleId);
    expect(await failedReasons()).toEqual([]);
    const writtenByDead = await rowsWrittenBy(saleId, deadXids);
    console.info(
      `[worker-killed/${label}] ${ledger.accepted.size} orders; ${entryIds.length} entries in flight at SIGKILL; ` +
        `${waiters.length} dead-worker statement(s) held in Postgres, ${retried.length - waiters.length} retries queued behind them; ` +
        `${writtenByDead} rows committed by the dead worker's statements after its death; ` +
        `persisted ${persisted.waitedMs} ms after the lock was released; jobs ${JSON.stringify(counts)}`,
    );
    return { writtenByDead, accepted: ledger.accepted.size };
  } finally {
    await lock.release().catch(() => undefined);
    await killWorkers();
  }
}

it(
  'when a worker is SIGKILLed while its big batches are active, then a new worker retries them and Postgres holds every 201 exactly once',
  async () => {
    await killWhileActive(1_000, 'big-batches');
  },
  90_000,
);

it(
  'when a SIGKILLed worker’s statement still commits after its death, then the retried batch moves nothing and Postgres holds every 201 exactly once',
  async () => {
    // A small batch: its results fit Postgres's output buffer, so the orphaned statement commits.
    const { writtenByDead, accepted } = await killWhileActive(40, 'orphan-commits');
    expect(writtenByDead).toBe(accepted);
  },
  90_000,
);

it(
  'when workers are SIGKILLed twice while the same batch is active and Postgres rolls their statements back, ' +
    'then a third worker still persists every 201 exactly once (no batch is failed for stalling)',
  async () => {
    const saleId = await createSale(api.baseUrl, stack.secret, ITEMS);
    const lock = await lockItems(saleId);
    try {
      // All orders before the first worker: the persister reads them as one batch.
      const ledger = await placeAll(saleId, 300);
      let worker = await startWorker();
      const kills: string[] = [];
      const inFlightAtKill: string[][] = [];
      for (let kill = 1; kill <= 2; kill++) {
        const { entryIds, waiters } = await inFlightAndBlocked(saleId);
        inFlightAtKill.push(entryIds);
        // The batch is in the hands of this worker (claimed from the last one after the first kill).
        expect(new Set((await inFlight(saleId)).map(([, consumer]) => consumer))).toEqual(new Set([consumerOf(worker)]));
        await worker.kill('SIGKILL');
        // Postgres notices the dead client: the half-done upserts roll back, nothing of them lands.
        await terminate(waiters);
        kills.push(`kill ${kill}: ${entryIds.length} entries in flight, ${waiters.length} statement(s) rolled back`);
        worker = await startWorker();
      }
      // Both kills caught the same batch: it has lost its worker twice.
      expect(inFlightAtKill[1]).toEqual(inFlightAtKill[0]);
      // The third worker claims the twice-abandoned entries once idle; then Postgres is let go.
      await until('the third worker to take the stalled batch', 20_000, async () =>
        (await lockWaiters()).length > 0 || (await persistQueue.queue.getFailedCount()) > 0 ? true : undefined,
      );
      await lock.release();

      const counts = await drained(saleId);
      expect(await failedReasons()).toEqual([]);
      const persisted = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 30_000);
      console.info(
        `[worker-killed/twice] ${ledger.accepted.size} orders; ${kills.join('; ')}; ` +
          `persisted ${persisted.waitedMs} ms after the queue drained; jobs ${JSON.stringify(counts)}`,
      );
    } finally {
      await lock.release().catch(() => undefined);
      await killWorkers();
    }
  },
  90_000,
);

