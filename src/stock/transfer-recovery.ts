// The worker's transfer sweeper: finishes stock transfers whose driver died between debit and
// credit (StockTransfers.recover on every sharded item of every live sale), so units debited from
// one shard always reach the other even when no shopper meets the dry shard again. Several
// sweepers may run, beside API processes recovering on their own: every step is idempotent on
// the transfer id, so the worst case is a repeated ALREADY.
import type { Logger } from '../logger.ts';
import { roundFailureLevel, type RedisClient } from '../redis/connection.ts';
import { anchorKey } from './keys.ts';
import { itemsOfAnchor } from './scripts/load-sale.ts';
import type { StockTransfers } from './transfers.ts';

/** An item split into `shards` stock shards (only K > 1 items have transfers). */
export interface ShardedItem {
  readonly saleId: string;
  readonly sku: string;
  readonly shards: number;
}

const DEFAULT_INTERVAL_MS = 1_000;

export class TransferRecovery {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private round: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly transfers: StockTransfers,
    private readonly items: () => Promise<readonly ShardedItem[]>,
    private readonly logger: Logger,
    private readonly intervalMs = DEFAULT_INTERVAL_MS,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.round = this.runOnce().then(
        () => this.schedule(),
        (err: unknown) => {
          this.logger.warn({ err }, 'transfer recovery round failed; retrying next round');
          this.schedule();
        },
      );
    }, this.intervalMs);
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.round;
  }

  /** One pass over every sharded item; returns the units whose transfer it closed. */
  async runOnce(): Promise<number> {
    let units = 0;
    for (const item of await this.items()) {
      if (item.shards < 2) continue;
      // One item's failure (a shard not loaded, a script error) must not hold up the others.
      try {
        const closed = await this.transfers.recover(item.saleId, item.sku, item.shards);
        if (closed > 0) this.logger.info({ ...item, units: closed }, 'recovered stock transfers left by a dead driver');
        units += closed;
      } catch (err) {
        this.logger[roundFailureLevel(err)]({ ...item, err: (err as Error).message }, 'recovering transfers failed; going on with the next item');
      }
    }
    return units;
  }
}

/**
 * The sharded items of the live sales, from each sale's anchor (`shards:<encoded sku>` = K): what
 * the worker's TransferRecovery walks. A sale without an anchor yields nothing.
 */
export function anchoredItems(redis: RedisClient, prefix: string, liveSaleIds: () => Promise<readonly string[]>): () => Promise<ShardedItem[]> {
  return async () => {
    const sales = await liveSaleIds();
    const anchors = await Promise.all(sales.map((saleId) => redis.hgetall(anchorKey(prefix, saleId))));
    return sales.flatMap((saleId, i) =>
      itemsOfAnchor(anchors[i] ?? {}).flatMap(({ sku, shards }) => (Number.isInteger(shards) && shards > 1 ? [{ saleId, sku, shards }] : [])),
    );
  };
}
