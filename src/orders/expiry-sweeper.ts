// Expires unpaid orders at their deadline, in batches. Each sale keeps a sorted set of pending
// orders by deadline, so a round reads only what is due; the set lives in Redis, so a restarted
// sweeper picks up where the last one stopped. A batch costs three round trips whatever its size
// (the due ids; their items, pipelined; one expireDue call that expires them all atomically), and
// a sale's round goes on while batches come back full, so expiry keeps up with a rush of accepts.
// Several sweepers may run: the script expires each order once, and a short lease per sale keeps
// them from reading the same batch.
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.ts';
import type { RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import type { DueOrder } from '../stock/scripts/expire-due.ts';
import type { OrderLifecycle } from './lifecycle.ts';

export interface SweeperOptions {
  /** Pause between rounds; a unit comes back at most about this long after its deadline, plus the round itself. */
  readonly intervalMs?: number;
  /** Orders per script call; bounds how long one call holds Redis (~10 µs per order). */
  readonly batchSize?: number;
  /** How long a sweeper keeps a sale to itself; another takes it over this long after it died. */
  readonly leaseMs?: number;
}

// 250 ms rounds when idle (25 ms after a round that found work) bring a unit back within ~0.5 s
// of its deadline while the sweeper keeps up (~1.5 s at worst measured in a 20,000-order storm on
// a loaded machine), and
// 500-order batches let a looping round drain 7,000-15,000 orders/s (bench/expiry-storm.ts
// --backlog) against a rush accepted at 5,000-8,000/s. The price: one call holds Redis ~10-25 µs
// per order, 5-15 ms per batch, measured on a loaded 2-core machine; a smaller batch holds it
// less and drains slower (200: 7,000-9,500/s).
const DEFAULT_INTERVAL_MS = 250;
const DEFAULT_BATCH_SIZE = 500;
const DEFAULT_LEASE_MS = 1_000;
/** The pause after a round that expired something. */
const BUSY_INTERVAL_MS = 25;

export class ExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private round: Promise<unknown> = Promise.resolve();
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly leaseMs: number;
  /** This sweeper's name on the leases it holds. */
  private readonly id = randomUUID();
  /** Sales whose lease this sweeper took, to hand back on stop. */
  private readonly leased = new Set<string>();

  constructor(
    private readonly redis: RedisClient,
    private readonly lifecycle: OrderLifecycle,
    private readonly prefix: string,
    private readonly liveSaleIds: () => Promise<readonly string[]>,
    private readonly logger: Logger,
    options: SweeperOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  // The next round starts an interval after the last one ended, so rounds never pile up; after a
  // round that found work, sooner: in a storm, deadlines keep falling due while a round drains.
  private schedule(delayMs = this.intervalMs): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.round = this.runOnce(Date.now(), { lease: true }).then(
        (expired) => this.schedule(expired > 0 ? Math.min(BUSY_INTERVAL_MS, this.intervalMs) : this.intervalMs),
        (err: unknown) => {
          this.logger.warn({ err }, 'expiry round failed; retrying next round');
          this.schedule();
        },
      );
    }, delayMs);
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.round;
    // Hand the leases back so another sweeper takes the sales over at its next round, not a lease later.
    for (const saleId of this.leased) {
      const key = saleKeys(this.prefix, saleId).sweepLease;
      if ((await this.redis.get(key)) === this.id) await this.redis.del(key);
    }
    this.leased.clear();
  }

  /**
   * Expires every order of every live sale whose deadline is at or before `now`; returns how many.
   * With `lease`, a sale another sweeper holds is left to it (the timer's rounds take leases;
   * a direct call sweeps everything).
   */
  async runOnce(now = Date.now(), options: { readonly lease?: boolean } = {}): Promise<number> {
    let expired = 0;
    for (const saleId of await this.liveSaleIds()) {
      // One sale's failure (a key of the wrong type, a script error) must not keep the sales after
      // it from being swept: it is logged and tried again next round.
      try {
        if (options.lease && !(await this.takeLease(saleId))) continue;
        expired += await this.sweepSale(saleId, now, options.lease ?? false);
      } catch (err) {
        this.logger.error({ saleId, err: (err as Error).message }, 'sweeping a sale failed; going on with the next sale');
      }
    }
    return expired;
  }

  /** Takes or renews this sweeper's lease on a sale; false when another sweeper holds it. */
  private async takeLease(saleId: string): Promise<boolean> {
    const key = saleKeys(this.prefix, saleId).sweepLease;
    if ((await this.redis.set(key, this.id, 'PX', this.leaseMs, 'NX')) !== 'OK') {
      // Ours from an earlier round: renew it. Not atomic with the read, and need not be: the
      // worst case is two sweepers on one sale for a round, which the script makes harmless.
      if ((await this.redis.get(key)) !== this.id) return false;
      await this.redis.pexpire(key, this.leaseMs);
    }
    this.leased.add(saleId);
    return true;
  }

  private async sweepSale(saleId: string, now: number, leased: boolean): Promise<number> {
    const keys = saleKeys(this.prefix, saleId);
    let expired = 0;
    let leaseRenewedAt = Date.now();
    for (;;) {
      // A long drain keeps its lease alive; one lost meanwhile leaves the rest to its new holder.
      if (leased && Date.now() - leaseRenewedAt > this.leaseMs / 2) {
        if (!(await this.takeLease(saleId))) break;
        leaseRenewedAt = Date.now();
      }
      const ids = await this.redis.zrangebyscore(keys.deadlines, '-inf', now, 'LIMIT', 0, this.batchSize);
      if (ids.length === 0) break;
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hget(keys.order(id), 'sku');
      const skus = (await pipeline.exec()) ?? [];
      const due: DueOrder[] = [];
      const gone: string[] = [];
      ids.forEach((orderId, i) => {
        const [err, sku] = skus[i] ?? [new Error('no reply')];
        if (err) throw err;
        if (typeof sku === 'string') due.push({ orderId, sku });
        else gone.push(orderId);
      });
      if (gone.length > 0) {
        // Their records outlived every use and expired; nothing is left to release.
        this.logger.error({ saleId, orderIds: gone }, 'pending orders have no record left; dropped from deadlines');
        await this.redis.zrem(keys.deadlines, ...gone);
      }
      const expiredNow = await this.lifecycle.expireDue(saleId, due, now);
      expired += expiredNow;
      // A short batch was the last; a full one that changed nothing means another sweeper is on
      // the same orders: leave the rest to it rather than spin.
      if (ids.length < this.batchSize || expiredNow + gone.length === 0) break;
    }
    return expired;
  }
}
