// The BullMQ worker: the slow path for batches the outbox persister handed over because Postgres
// refused them as data (and for an operator's retry of a failed one). Transient failures (Postgres
// away) are retried with capped backoff until they succeed. The batch is written order by order so
// the rest still lands: an order whose data Postgres refuses (e.g. a NUL) goes to the dead-letter
// table — kept, counted and logged for an operator, never dropped. (Orders the oversell guard
// refuses never come here: the writer records them as rejected_oversell rows.)
import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Config } from '../config.ts';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { closeRedis, createRedis, type RedisClient } from '../redis/connection.ts';
import { orderKeyOf } from '../stock/keys.ts';
import { escapeUnsafe } from '../text.ts';
import type { BatchWriter } from './batch-writer.ts';
import { DeadLetters, isDataError } from './dead-letters.ts';
import type { Order } from './order.ts';
import { isBatch, latestPerOrder, type PersistBatch } from './outbox.ts';
import { PERSIST_ATTEMPTS, PERSIST_QUEUE, persistBackoff, queuePrefix } from './queue.ts';

export interface PersistWorkerDeps {
  readonly config: Config;
  readonly pool: Pool;
  readonly batches: BatchWriter;
  /** Command connection, for keeping a dead letter's live record. */
  readonly redis: RedisClient;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** Writes the orders one by one: those whose data Postgres refuses are returned apart; a
 *  transient failure still throws, so the whole batch is retried. */
async function writeEachAlone(batches: BatchWriter, saleId: string, orders: readonly Order[]) {
  const poisoned: { order: Order; error: unknown }[] = [];
  for (const order of orders) {
    try {
      await batches.write(saleId, [order]);
    } catch (error) {
      if (isDataError(error)) poisoned.push({ order, error });
      else throw error;
    }
  }
  return poisoned;
}

/** The worker of partition `partition`'s queue. */
export function createPersistWorker(deps: PersistWorkerDeps, partition = 0): { worker: Worker<PersistBatch>; close(): Promise<void> } {
  const { config, metrics, logger, redis, batches } = deps;
  const deadLetters = new DeadLetters(deps.pool);

  /** A dead letter: recorded in Postgres, counted, logged, and its live record kept in Redis
   *  (no TTL) so GET /v1/orders/:id still answers while an operator deals with it. */
  const setAside = async (saleId: string, order: Order, error: unknown, jobId: string | undefined) => {
    const sqlstate = String((error as { code?: unknown }).code);
    if (await deadLetters.record({ saleId, order, error })) metrics.persistDeadLetters.inc({ sqlstate });
    const key = orderKeyOf(config.redis.prefix, order.id);
    if (key) await redis.persist(key);
    logger.error(
      { event: 'persist_dead_letter', saleId: escapeUnsafe(saleId), orderId: escapeUnsafe(order.id), status: escapeUnsafe(String(order.status)), sqlstate, jobId, err: (error as Error).message },
      'Postgres refused an order state as data; set aside in order_dead_letters',
    );
  };

  const processor = async (job: Job<PersistBatch>) => {
    if (!isBatch(job.data)) {
      metrics.persistFailures.inc({ reason: 'malformed' });
      throw new UnrecoverableError('job data is not a batch of outbox entries');
    }
    const { saleId } = job.data;
    const orders = latestPerOrder(job.data.entries);
    try {
      await batches.write(saleId, orders);
    } catch (error) {
      if (!isDataError(error)) {
        metrics.persistFailures.inc({ reason: 'error' });
        throw error;
      }
      for (const { order, error: cause } of await writeEachAlone(batches, saleId, orders)) await setAside(saleId, order, cause, job.id);
    }
  };

  // Worker connection: blocking commands, so no per-request retry limit (BullMQ's requirement).
  const connection = createRedis(config, { name: 'flashsale-queue-worker', maxRetriesPerRequest: null });
  connection.on('error', (err: Error) => logger.warn({ err: err.message }, 'persist worker connection error'));
  const worker = new Worker<PersistBatch>(PERSIST_QUEUE, processor, {
    connection: connection as unknown as ConnectionOptions,
    prefix: queuePrefix(config, partition),
    // Only refused batches come this way: rare, and written order by order anyway.
    concurrency: 1,
    lockDuration: config.queueLockDurationMs,
    stalledInterval: config.queueLockDurationMs,
    // A batch whose worker died is retried however often that happens: the write is idempotent,
    // and BullMQ's default (1) fails a batch that stalls twice, losing accepted orders.
    maxStalledCount: PERSIST_ATTEMPTS,
    settings: { backoffStrategy: (attemptsMade: number) => persistBackoff(attemptsMade) },
  });
  worker.on('failed', (job, err) => {
    if (job && job.attemptsMade >= 3 && !(err instanceof UnrecoverableError)) logger.warn({ jobId: job.id, attempts: job.attemptsMade, err: err.message }, 'persist batch still failing; retrying');
  });
  worker.on('error', (err) => logger.warn({ err: err.message }, 'persist worker error'));
  return {
    worker,
    async close() {
      await worker.close();
      await closeRedis(connection);
    },
  };
}

/** The workers of the partitions this process holds the leases of: started as a partition is
 *  taken, closed (its job in hand finished first) as it is handed back. */
export class PartitionWorkers {
  private readonly running = new Map<number, ReturnType<typeof createPersistWorker>>();
  /** Changes one after the other, so a close and a start of one partition never overlap. */
  private changes: Promise<void> = Promise.resolve();

  constructor(private readonly deps: PersistWorkerDeps) {}

  hold(partitions: ReadonlySet<number>): Promise<void> {
    this.changes = this.changes.then(async () => {
      for (const [partition, worker] of this.running) {
        if (partitions.has(partition)) continue;
        this.running.delete(partition);
        await worker.close();
      }
      for (const partition of partitions) {
        if (!this.running.has(partition)) this.running.set(partition, createPersistWorker(this.deps, partition));
      }
    });
    return this.changes;
  }

  held(): number[] {
    return [...this.running.keys()].sort((a, b) => a - b);
  }

  close(): Promise<void> {
    return this.hold(new Set());
  }
}
