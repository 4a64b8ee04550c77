// The BullMQ worker that writes batches of outbox entries to Postgres. Transient failures
// (Postgres away) are retried with capped backoff until they succeed. A batch Postgres refuses
// for one of its entries is written order by order so the rest still lands: an order that would
// oversell fails the job for good, an order whose data Postgres refuses (e.g. a NUL) goes to the
// dead-letter table — each kept, counted and logged for an operator, never dropped.
import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Config } from '../config.ts';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { closeRedis, createRedis, type RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import { escapeUnsafe } from '../text.ts';
import { DeadLetters, isDataError } from './dead-letters.ts';
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

/** Writes the orders one by one: those the guard refuses and those whose data Postgres refuses
 *  are returned apart; a transient failure still throws, so the whole batch is retried. */
async function writeEachAlone(writer: OrderWriter, saleId: string, orders: readonly Order[]) {
  const written: WriteResult[] = [];
  const refused: string[] = [];
  const poisoned: { order: Order; error: unknown }[] = [];
  for (const order of orders) {
    try {
      written.push(await writer.write(saleId, [order]));
    } catch (error) {
      if (error instanceof GuardViolation) refused.push(order.id);
      else if (isDataError(error)) poisoned.push({ order, error });
      else throw error;
    }
  }
  return {
    result: { inserted: written.flatMap((r) => r.inserted), finalised: written.flatMap((r) => r.finalised) },
    refused,
    poisoned,
  };
}

export function createPersistWorker(deps: PersistWorkerDeps): { worker: Worker<PersistBatch>; close(): Promise<void> } {
  const { config, metrics, logger, redis } = deps;
  const writer = new OrderWriter(deps.pool);
  const deadLetters = new DeadLetters(deps.pool);

  const record = async (saleId: string, result: WriteResult) => {
    const now = Date.now();
    metrics.ordersPersisted.inc(result.inserted.length);
    for (const { createdAt } of result.inserted) metrics.persistLag.observe(Math.max(0, now - createdAt) / 1000);
    if (result.finalised.length > 0) {
      const keys = saleKeys(config.redis.prefix, saleId);
      await Promise.all(result.finalised.map(({ id }) => redis.expire(keys.order(id), FINAL_ORDER_RETENTION_SECONDS)));
    }
  };

  /** A dead letter: recorded in Postgres, counted, logged, and its live record kept in Redis
   *  (no TTL) so GET /v1/orders/:id still answers while an operator deals with it. */
  const setAside = async (saleId: string, order: Order, error: unknown, jobId: string | undefined) => {
    const sqlstate = String((error as { code?: unknown }).code);
    if (await deadLetters.record({ saleId, order, error })) metrics.persistDeadLetters.inc({ sqlstate });
    await redis.persist(saleKeys(config.redis.prefix, saleId).order(order.id));
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
    metrics.persistBatchSize.observe(orders.length);
    try {
      await record(saleId, await writer.write(saleId, orders));
    } catch (error) {
      if (!(error instanceof GuardViolation) && !isDataError(error)) {
        metrics.persistFailures.inc({ reason: 'error' });
        throw error;
      }
      const { result, refused, poisoned } = await writeEachAlone(writer, saleId, orders);
      await record(saleId, result);
      for (const { order, error: cause } of poisoned) await setAside(saleId, order, cause, job.id);
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
