// A test file's own outbox persisters, beside an API that runs none (testApi's 'api' role): the
// file's Redis, Postgres pool and refused-batch queues, and persisters built on them with a short
// claim idle time, so pipeline tests drive rounds by hand. They read every partition (no leases)
// unless a test gives them a lease time.
import { Redis } from 'ioredis';
import type pg from 'pg';
import { createPool, type Pool } from '../../src/db/pool.ts';
import type { App } from '../../src/http/app.ts';
import { createLogger } from '../../src/logger.ts';
import { createMetrics, type Metrics } from '../../src/metrics.ts';
import { BatchWriter } from '../../src/orders/batch-writer.ts';
import { DeadLetters } from '../../src/orders/dead-letters.ts';
import { OrderWriter } from '../../src/orders/order-writer.ts';
import { OutboxPersister, type OutboxPersisterOptions } from '../../src/orders/outbox-persister.ts';
import { LiveOutboxStreams, type OutboxStream } from '../../src/orders/outbox-streams.ts';
import { createPersistQueues, type PersistQueues } from '../../src/orders/queue.ts';
import { SaleRepository } from '../../src/sales/repository.ts';
import { defineScripts } from '../../src/stock/scripts/registry.ts';
import { testApi, type Tokens } from './api.ts';
import type { TestContext } from './context.ts';

type PersisterOptions = Partial<OutboxPersisterOptions> & { metrics?: Metrics };

export interface PersisterFixture {
  readonly ctx: TestContext;
  readonly app: App;
  readonly db: pg.Client;
  readonly tk: Tokens;
  readonly redis: Redis;
  readonly pool: Pool;
  /** The refused-batch queues, one per partition (ctx.config.persistPartitions). */
  readonly queues: PersistQueues;
  /** A persister over the outbox streams of `saleIds`; `options` override the fixture's (consumer name, batch size…). */
  persister(saleIds: readonly string[], options?: PersisterOptions): OutboxPersister;
  /** A persister over the given streams. */
  persisterOf(streams: () => Promise<readonly OutboxStream[]>, options?: PersisterOptions): OutboxPersister;
}

export function persisterFixture(claimIdleMs: number) {
  const api = testApi({ db: true });
  let opened: PersisterFixture | undefined;
  let closeOwn = async () => {};
  return {
    /** The API fixture under it, for createSale and the other sale helpers. */
    api,
    async open(): Promise<PersisterFixture> {
      const { ctx, app, db, tk } = await api.open();
      const redis = new Redis(ctx.redisUrl);
      const pool = createPool(ctx.config);
      const queues = createPersistQueues(ctx.config);
      const sales = new SaleRepository(pool);
      closeOwn = async () => {
        await queues.close();
        await pool.end();
        redis.disconnect();
      };
      const logger = createLogger(ctx.config);
      opened = {
        ctx, app, db, tk, redis, pool, queues,
        persister(saleIds, options) {
          const streams = new LiveOutboxStreams(ctx.prefix, async () => [...saleIds], (saleId) => sales.find(saleId));
          return this.persisterOf(() => streams.list(), options);
        },
        persisterOf(streams, { metrics = createMetrics(), ...options } = {}) {
          return new OutboxPersister(
            defineScripts(redis, ctx.prefix),
            new BatchWriter(new OrderWriter(pool), redis, ctx.prefix, metrics, logger),
            queues.queues,
            streams,
            metrics,
            logger,
            { claimIdleMs, concurrency: 1, leaseMs: 0, deadLetters: new DeadLetters(pool), ...options },
          );
        },
      };
      return opened;
    },
    async close(): Promise<void> {
      await closeOwn();
      await api.close();
    },
  };
}
