// The BullMQ worker that writes batches of outbox entries to Postgres. Transient failures
// (Postgres away) are retried with capped backoff until they succeed; a batch that would
// oversell is written order by order so the rest still lands, and the refused orders fail the
// job for good — kept, counted and logged for an operator, never dropped.
import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Config } from '../config.ts';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { closeRedis, createRedis, type RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import type { Order } from './order.ts';
import { GuardViolation, OrderWriter, type WriteResult } from './order-writer.ts';
import { isBatch, latestPerOrder, type PersistBatch } from './outbox.ts';
import { PERSIST_ATTEMPTS, PERSIST_QUEUE, persistBackoff, queuePrefix } from './queue.ts';

/** How long a persisted order in a final state stays readable from Redis. */
export const FINAL_ORDER_RETENTION_SECONDS = 600;

export interface PersistWorkerDeps {
  readonly config: Config;
  readonly pool: Pool;
  /** Command connection, for shortening the life of finished order records. */
  readonly redis: RedisClient;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly concurrency?: number;
}

async function writeEachAlone(writer: OrderWriter, saleId: string, orders: readonly Order[]) {
  const written: WriteResult[] = [];
  const refused: string[] = [];
  for (const order of orders) {
    try {
      written.push(await writer.write(saleId, [order]));
    } catch (error) {
      if (!(error instanceof GuardViolation)) throw error;
      refused.push(order.id);
    }
  }
  return {
    result: { inserted: written.flatMap((r) => r.inserted), finalised: written.flatMap((r) => r.finalised) },
    refused,
  };
}

export function createPersistWorker(deps: PersistWorkerDeps): { worker: Worker<PersistBatch>; close(): Promise<void> } {
  const { config, metrics, logger, redis } = deps;
  const writer = new OrderWriter(deps.pool);

  const record = async (saleId: string, result: WriteResult) => {
    const now = Date.now();
    metrics.ordersPersisted.inc(result.inserted.length);
    for (const { createdAt } of result.inserted) metrics.persistLag.observe(Math.max(0, now - createdAt) / 1000);
    if (result.finalised.length > 0) {
      const keys = saleKeys(config.redis.prefix, saleId);
      await Promise.all(result.finalised.map(({ id }) => redis.expire(keys.order(id), FINAL_ORDER_RETENTION_SECONDS)));
    }
  };

  const processor = async (job: Job<PersistBatch>) => {
    if (!isBatch(job.data)) {
      metrics.persistFailures.inc({ reason: 'malformed' });
      throw new UnrecoverableError('job data is not a batch of outbox entries');
    }
    const { saleId } = job.data;
    const orders = latestPerOrder(job.data.entries);
    metrics.persistBatchSize.observe(orders.length);
    try {
      await record(saleId, await writer.write(saleId, orders));
    } catch (error) {
      if (!(error instanceof GuardViolation)) {
        metrics.persistFailures.inc({ reason: 'error' });
        throw error;
      }
      const { result, refused } = await writeEachAlone(writer, saleId, orders);
      await record(saleId, result);
      if (refused.length > 0) {
        metrics.persistFailures.inc({ reason: 'guard' });
        logger.error({ event: 'persist_refused_oversell', saleId, jobId: job.id, refused }, 'Postgres guard refused orders that would oversell');
        throw new UnrecoverableError(`Postgres guard refused ${refused.length} order(s) that would oversell: ${refused.join(', ')}`);
      }
    }
  };

  // Worker connection: blocking commands, so no per-request retry limit (BullMQ's requirement).
  const connection = createRedis(config, { name: 'flashsale-queue-worker', maxRetriesPerRequest: null });
  connection.on('error', (err: Error) => logger.warn({ err: err.message }, 'persist worker connection error'));
  const worker = new Worker<PersistBatch>(PERSIST_QUEUE, processor, {
    connection: connection as unknown as ConnectionOptions,
    prefix: queuePrefix(config),
    concurrency: deps.concurrency ?? 4,
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
