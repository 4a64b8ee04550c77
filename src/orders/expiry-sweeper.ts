// Expires unpaid orders at their deadline. Each sale keeps a sorted set of pending orders by
// deadline, so a round reads only what is due; the set lives in Redis, so a restarted sweeper
// picks up where the last one stopped. Several sweepers may run: releaseOrder decides once.
import type { Logger } from '../logger.ts';
import type { RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import type { OrderLifecycle } from './lifecycle.ts';

export interface SweeperOptions {
  readonly intervalMs?: number;
  readonly batchSize?: number;
}

export class ExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> = Promise.resolve();
  private readonly intervalMs: number;
  private readonly batchSize: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly lifecycle: OrderLifecycle,
    private readonly prefix: string,
    private readonly liveSaleIds: () => Promise<readonly string[]>,
    private readonly logger: Logger,
    options: SweeperOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1_000;
    this.batchSize = options.batchSize ?? 500;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.round = this.round.then(() =>
        this.runOnce().then(
          () => undefined,
          (err: unknown) => this.logger.warn({ err }, 'expiry round failed; retrying next round'),
        ),
      );
    }, this.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.round;
  }

  /** Expires every order of every live sale whose deadline has passed; returns how many. */
  async runOnce(now = Date.now()): Promise<number> {
    let expired = 0;
    for (const saleId of await this.liveSaleIds()) {
      const keys = saleKeys(this.prefix, saleId);
      const due = await this.redis.zrangebyscore(keys.deadlines, '-inf', now, 'LIMIT', 0, this.batchSize);
      for (const orderId of due) {
        const sku = await this.redis.hget(keys.order(orderId), 'sku');
        if (sku === null) {
          // Its record outlived every use and expired; nothing is left to release.
          this.logger.error({ saleId, orderId }, 'pending order has no record left; dropped from deadlines');
          await this.redis.zrem(keys.deadlines, orderId);
          continue;
        }
        const outcome = await this.lifecycle.expire({ id: orderId, saleId, sku }, now);
        if (outcome !== 'not-due' && outcome.kind === 'done' && outcome.changed) expired++;
      }
    }
    return expired;
  }
}
