// Writes one sale's batch of order states to Postgres and records what the write did: persisted
// counts and lag, and the shortened life of finished orders' Redis records. Shared by the outbox
// persister (every batch) and the BullMQ worker (batches handed over after Postgres refused one).
import type { Metrics } from '../metrics.ts';
import type { RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import type { Order } from './order.ts';
import type { OrderWriter, WriteResult } from './order-writer.ts';

/** How long a persisted order in a final state stays readable from Redis. */
export const FINAL_ORDER_RETENTION_SECONDS = 600;

export class BatchWriter {
  constructor(
    private readonly writer: OrderWriter,
    /** Command connection, for shortening the life of finished order records. */
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly metrics: Metrics,
  ) {}

  /** Throws what the writer throws (GuardViolation, a data error, a transient failure); nothing is recorded then. */
  async write(saleId: string, orders: readonly Order[]): Promise<WriteResult> {
    const result = await this.writer.write(saleId, orders);
    const now = Date.now();
    this.metrics.ordersPersisted.inc(result.inserted.length);
    for (const { createdAt } of result.inserted) this.metrics.persistLag.observe(Math.max(0, now - createdAt) / 1000);
    if (result.finalised.length > 0) {
      const keys = saleKeys(this.prefix, saleId);
      await Promise.all(result.finalised.map(({ id }) => this.redis.expire(keys.order(id), FINAL_ORDER_RETENTION_SECONDS)));
    }
    return result;
  }
}
