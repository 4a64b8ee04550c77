// The BullMQ queues of refused batches: those the outbox persister could not write as a whole
// because Postgres refused one of their orders as data (a value it cannot store). Their workers
// write them order by order, setting aside the orders Postgres refuses. One queue per persistence partition, each under its own hash tag
// `{<prefix>:persist:<i>}`, so the queues spread over a cluster's masters and each works within
// one slot; producers and workers use separate connections.
import { Queue, type ConnectionOptions } from 'bullmq';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { closeRedis, createRedis } from '../redis/connection.ts';
import type { PersistBatch } from './outbox.ts';

export const PERSIST_QUEUE = 'persist-orders';
export const PERSIST_JOB = 'persist-batch';

/** The hash tag of persistence partition `partition`: its queue's keys and its lease share it. */
export function partitionTag(prefix: string, partition: number): string {
  return `{${prefix}:persist:${partition}}`;
}

export function queuePrefix(config: Pick<Config, 'redis'>, partition: number): string {
  return partitionTag(config.redis.prefix, partition);
}

/** Attempts for transient failures (Postgres down): effectively "until it works", spaced out. */
export const PERSIST_ATTEMPTS = 100_000;
const MAX_BACKOFF_MS = 10_000;

export function persistBackoff(attemptsMade: number): number {
  return Math.min(MAX_BACKOFF_MS, 200 * 2 ** Math.min(attemptsMade, 16));
}

export type PersistQueue = Queue<PersistBatch, void, typeof PERSIST_JOB>;

// How many jobs the report's queries look at, newest and oldest alike: the report is a view for
// operators, not an audit, and a backlog deeper than this already shows as persist lag.
const QUERY_WINDOW = 100;

/** What the queue holds for one sale; the only place outside the worker that reads job payloads. */
export interface QueuedSale {
  /** Creation time (ms) of the oldest order in a batch still waiting, running or retrying. */
  readonly oldestPendingOrderAt: number | undefined;
  /** Batches of this sale that failed for good (kept for operators to inspect and retry). */
  readonly failedBatches: number;
}

/** Over every partition's queue (a sale's shards may sit in several). */
export async function queuedSale(queues: readonly PersistQueue[], saleId: string): Promise<QueuedSale> {
  const lists = await Promise.all(
    queues.map((queue) =>
      Promise.all([queue.getJobs(['active', 'waiting', 'delayed'], 0, QUERY_WINDOW - 1, true), queue.getJobs(['failed'], 0, QUERY_WINDOW - 1, true)]),
    ),
  );
  const pending = lists.flatMap(([jobs]) => jobs);
  const failed = lists.flatMap(([, jobs]) => jobs);
  const ofSale = (jobs: typeof pending) => jobs.filter((job) => job?.data?.saleId === saleId);
  const firstOrders = ofSale(pending).flatMap((job) => (job.data.entries[0] ? [job.data.entries[0].order.createdAt] : []));
  return {
    oldestPendingOrderAt: firstOrders.length > 0 ? Math.min(...firstOrders) : undefined,
    failedBatches: ofSale(failed).length,
  };
}

export interface PersistQueues {
  /** Queue i is partition i's. */
  readonly queues: readonly PersistQueue[];
  /** Job counts summed over the partitions. */
  getJobCounts(...types: Parameters<PersistQueue['getJobCounts']>): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/** Partition `partition`'s queue alone, on its own connection. */
export function createPersistQueue(config: Config, logger?: Logger, partition = 0): { queue: PersistQueue; close(): Promise<void> } {
  const { queues, close } = openQueues(config, logger, [partition]);
  return { queue: queues[0]!, close };
}

/** Every partition's queue (PERSIST_PARTITIONS of them), sharing one producer connection. */
export function createPersistQueues(config: Config, logger?: Logger): PersistQueues {
  const { queues, close } = openQueues(config, logger, Array.from({ length: config.persistPartitions }, (_, i) => i));
  return {
    queues,
    async getJobCounts(...types) {
      const counts = await Promise.all(queues.map((queue) => queue.getJobCounts(...types)));
      const sum: Record<string, number> = {};
      for (const count of counts) for (const [type, n] of Object.entries(count)) sum[type] = (sum[type] ?? 0) + n;
      return sum;
    },
    close,
  };
}

function openQueues(config: Config, logger: Logger | undefined, partitions: readonly number[]): { queues: PersistQueue[]; close(): Promise<void> } {
  // Producer connection: fail fast rather than queue commands while Redis is away. One for all the
  // queues: on a cluster it sends each queue's commands to the master of its slot.
  const redis = createRedis(config, { name: 'flashsale-queue-producer', maxRetriesPerRequest: 1 });
  // An 'error' event without a listener would crash the process; Redis outages are survivable.
  const warn = (err: Error) => logger?.warn({ err: err.message }, 'persist queue connection error');
  redis.on('error', warn);
  const queues = partitions.map((partition) => {
    const queue = new Queue<PersistBatch, void, typeof PERSIST_JOB>(PERSIST_QUEUE, {
      connection: redis as unknown as ConnectionOptions,
      prefix: queuePrefix(config, partition),
      defaultJobOptions: {
        attempts: PERSIST_ATTEMPTS,
        backoff: { type: 'capped' },
        // Only refused batches come here, so keeping completed ones a while for operators costs
        // nothing per ordinary order.
        removeOnComplete: { age: 3600, count: 1_000 },
        // Failed jobs stay for operators to see and retry.
        removeOnFail: false,
      },
    });
    queue.on('error', warn);
    return queue;
  });
  return {
    queues,
    async close() {
      // BullMQ closing a queue whose connection never came up leaves a rejection unhandled;
      // with no Redis there is nothing to flush, so only the connection is dropped then.
      if (redis.status === 'ready') await Promise.all(queues.map((queue) => queue.close()));
      await closeRedis(redis);
    },
  };
}
