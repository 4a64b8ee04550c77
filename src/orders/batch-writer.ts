// Writes one sale's batch of order states to Postgres and records what the write did: persisted
// counts and lag, and the shortened life of finished orders' Redis records. Shared by the outbox
// persister (every batch) and the BullMQ worker (batches handed over after Postgres refused one).
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import type { RedisClient } from '../redis/connection.ts';
import { orderKeyOf } from '../stock/keys.ts';
import type { Order } from './order.ts';
import type { OrderWriter, WriteResult } from './order-writer.ts';
import { takeOffLiveBooks } from './oversell-rejections.ts';

/** How long a persisted order in a final state stays readable from Redis. */
export const FINAL_ORDER_RETENTION_SECONDS = 600;

export class BatchWriter {
  constructor(
    private readonly writer: OrderWriter,
    /** Command connection, for shortening the life of finished order records. */
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {}

  /** Throws what the writer throws (a data error, a transient failure); nothing is recorded then.
   *  Once Postgres committed it does not throw. */
  async write(saleId: string, orders: readonly Order[]): Promise<WriteResult> {
    const result = await this.writer.write(saleId, orders);
    const now = Date.now();
    this.metrics.ordersPersisted.inc(result.inserted.length);
    for (const { createdAt } of result.inserted) this.metrics.persistLag.observe(Math.max(0, now - createdAt) / 1000);
    if (result.finalised.length > 0) await this.shortenRetention(saleId, result.finalised);
    if (result.rejected.length > 0) {
      this.metrics.ordersRejectedOversell.inc(result.rejected.length);
      this.logger.error({ event: 'orders_rejected_oversell', saleId, orders: result.rejected.map((o) => o.id) }, 'Postgres guard refused orders Redis accepted; recorded as rejected_oversell for compensation');
      await takeOffLiveBooks(this.redis, this.prefix, result.rejected, this.logger);
    }
    return result;
  }

  /** Best effort, after Postgres committed: the batch is written whatever happens here, so a
   *  failure must not make its caller retry it (nor count it failed). A record left without its
   *  TTL costs Redis memory, not correctness. */
  private async shortenRetention(saleId: string, finalised: WriteResult['finalised']): Promise<void> {
    // Each record in its own shard's slot (named by the id): one command each, never multi-key.
    const keys = finalised.flatMap(({ id }) => orderKeyOf(this.prefix, id) ?? []);
    const results = await Promise.allSettled(keys.map((key) => this.redis.expire(key, FINAL_ORDER_RETENTION_SECONDS)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) {
      this.logger.warn({ saleId, failed: failed.length, err: (failed[0]!.reason as Error)?.message }, 'could not shorten the Redis life of finished orders; they stay until deleted');
    }
  }
}
