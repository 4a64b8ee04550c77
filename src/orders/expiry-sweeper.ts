// Expires unpaid orders at their deadline, in batches, on every stock shard of every live sale
// (layout 2: each shard keeps its own deadlines, in its own slot). A shard's sorted set of pending
// orders by deadline lets a round read only what is due; the set lives in Redis, so a restarted
// sweeper picks up where the last one stopped. A batch costs two round trips whatever its size
// (the due ids; one expireDue call that expires them all atomically), and a shard's round goes on
// while batches come back full, so expiry keeps up with a rush of accepts.
//
// Many shards, most of them idle: a timer round does not sweep a shard before its next deadline.
// It keeps each shard's earliest deadline (ZRANGE deadlines 0 0 WITHSCORES) and looks again only
// once that is due, or after `recheckMs` (an order placed since has a deadline at least one
// payment window after its creation, so a recheck no longer than the window never makes it
// late). An idle shard costs one ZRANGE per recheck, sent together with the others' (one round
// trip with auto-pipelining); a due shard costs its lease and its batches.
//
// Several sweepers may run: the script expires each order once, and a short lease per shard
// keeps them from reading the same batch.
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.ts';
import { roundFailureLevel, type RedisClient } from '../redis/connection.ts';
import { shardKeys, type ShardRef } from '../stock/keys.ts';
import type { OrderLifecycle } from './lifecycle.ts';

export interface SweeperOptions {
  /** Pause between rounds; a unit comes back at most about this long after its deadline, plus the round itself. */
  readonly intervalMs?: number;
  /** Orders per script call; bounds how long one call holds Redis (~10 µs per order). */
  readonly batchSize?: number;
  /** How long a sweeper keeps a shard to itself; another takes it over this long after it died. */
  readonly leaseMs?: number;
  /** How long a timer round trusts a shard's cached next deadline before reading it again. */
  readonly recheckMs?: number;
}

// 250 ms rounds when idle (25 ms after a round that found work) bring a unit back within ~0.5 s
// of its deadline while the sweeper keeps up (~1.5 s at worst measured in a 20,000-order storm on
// a loaded machine, layout 1), and 500-order batches let a looping round drain 7,000-15,000
// orders/s (bench/expiry-storm.ts --backlog) against a rush accepted at 5,000-8,000/s. The price:
// one call holds Redis ~10-25 µs per order, 5-15 ms per batch, measured on a loaded 2-core
// machine; a smaller batch holds it less and drains slower (200: 7,000-9,500/s).
const DEFAULT_INTERVAL_MS = 250;
const DEFAULT_BATCH_SIZE = 500;
const DEFAULT_LEASE_MS = 1_000;
// Payment windows are at least a second: an order placed after a look is never due before the next.
const DEFAULT_RECHECK_MS = 1_000;
/** The pause after a round that expired something. */
const BUSY_INTERVAL_MS = 25;

const shardId = (ref: ShardRef) => `${ref.saleId}\u0000${ref.sku}\u0000${ref.shard}`;

export class ExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private round: Promise<unknown> = Promise.resolve();
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly leaseMs: number;
  private readonly recheckMs: number;
  /** This sweeper's name on the leases it holds. */
  private readonly id = randomUUID();
  /** Lease keys of the shards this sweeper took, to hand back on stop. */
  private readonly leased = new Set<string>();
  /** Per shard: the time before which a timer round need not look at it (its next deadline, or a recheck). */
  private readonly quietUntil = new Map<string, number>();
  /** Shards read (their next deadline) and shards swept, since start: what idle shards cost. */
  readonly stats = { looks: 0, sweeps: 0 };

  constructor(
    private readonly redis: RedisClient,
    private readonly lifecycle: OrderLifecycle,
    private readonly prefix: string,
    /** Every stock shard of every live sale (shardRefsOf on their definitions). */
    private readonly liveShards: () => Promise<readonly ShardRef[]>,
    private readonly logger: Logger,
    options: SweeperOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.recheckMs = options.recheckMs ?? DEFAULT_RECHECK_MS;
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
    // Hand the leases back so another sweeper takes the shards over at its next round, not a lease later.
    for (const key of this.leased) {
      if ((await this.redis.get(key)) === this.id) await this.redis.del(key);
    }
    this.leased.clear();
  }

  /**
   * Expires every order of every live shard whose deadline is at or before `now`; returns how
   * many. With `lease` (the timer's rounds), a shard another sweeper holds is left to it, and a
   * shard whose cached next deadline is still ahead is not looked at; a direct call sweeps every
   * shard.
   */
  async runOnce(now = Date.now(), options: { readonly lease?: boolean } = {}): Promise<number> {
    const timed = options.lease ?? false;
    const shards = await this.liveShards();
    const live = new Set(shards.map(shardId));
    for (const id of this.quietUntil.keys()) if (!live.has(id)) this.quietUntil.delete(id);
    const toLook = timed ? shards.filter((ref) => (this.quietUntil.get(shardId(ref)) ?? -Infinity) <= now) : shards;
    // One look per shard, sent together: only the shards with something due are swept.
    const due = await Promise.all(toLook.map(async (ref) => ((await this.look(ref, now)) ? ref : undefined)));
    let expired = 0;
    for (const ref of due) {
      if (!ref) continue;
      // One shard's failure (a key of the wrong type, a script error) must not keep the shards
      // after it from being swept: it is logged and tried again next round.
      try {
        const keys = shardKeys(this.prefix, ref.saleId, ref.sku, ref.shard);
        if (timed && !(await this.takeLease(keys.sweepLease))) continue;
        expired += await this.sweepShard(ref, now, timed);
        await this.look(ref, now);
      } catch (err) {
        this.quietUntil.delete(shardId(ref));
        this.logger[roundFailureLevel(err)]({ ...ref, err: (err as Error).message }, 'sweeping a shard failed; going on with the next shard');
      }
    }
    return expired;
  }

  /** Reads the shard's earliest deadline and remembers until when it is quiet; true when due at `now`. */
  private async look(ref: ShardRef, now: number): Promise<boolean> {
    this.stats.looks += 1;
    let first: string[];
    try {
      first = await this.redis.zrange(shardKeys(this.prefix, ref.saleId, ref.sku, ref.shard).deadlines, 0, 0, 'WITHSCORES');
    } catch (err) {
      this.quietUntil.delete(shardId(ref));
      this.logger[roundFailureLevel(err)]({ ...ref, err: (err as Error).message }, 'reading a shard’s deadlines failed; trying again next round');
      return false;
    }
    const next = first[1] === undefined ? Infinity : Number(first[1]);
    this.quietUntil.set(shardId(ref), Math.min(next, now + this.recheckMs));
    return next <= now;
  }

  /** Takes or renews this sweeper's lease on a shard; false when another sweeper holds it. */
  private async takeLease(key: string): Promise<boolean> {
    if ((await this.redis.set(key, this.id, 'PX', this.leaseMs, 'NX')) !== 'OK') {
      // Ours from an earlier round: renew it. Not atomic with the read, and need not be: the
      // worst case is two sweepers on one shard for a round, which the script makes harmless.
      if ((await this.redis.get(key)) !== this.id) return false;
      await this.redis.pexpire(key, this.leaseMs);
    }
    this.leased.add(key);
    return true;
  }

  private async sweepShard(ref: ShardRef, now: number, leased: boolean): Promise<number> {
    this.stats.sweeps += 1;
    const keys = shardKeys(this.prefix, ref.saleId, ref.sku, ref.shard);
    let expired = 0;
    let leaseRenewedAt = Date.now();
    for (;;) {
      // A long drain keeps its lease alive; one lost meanwhile leaves the rest to its new holder.
      if (leased && Date.now() - leaseRenewedAt > this.leaseMs / 2) {
        if (!(await this.takeLease(keys.sweepLease))) break;
        leaseRenewedAt = Date.now();
      }
      const ids = await this.redis.zrangebyscore(keys.deadlines, '-inf', now, 'LIMIT', 0, this.batchSize);
      if (ids.length === 0) break;
      const batch = await this.lifecycle.expireDue(ref, ids, now);
      if (batch.gone.length > 0) {
        // Their records outlived every use and expired; nothing was left to release.
        this.logger.error({ ...ref, orderIds: batch.gone }, 'pending orders have no record left; dropped from deadlines');
      }
      expired += batch.expired.length;
      // A short batch was the last; a full one that changed nothing means another sweeper is on
      // the same orders: leave the rest to it rather than spin.
      if (ids.length < this.batchSize || batch.expired.length + batch.gone.length === 0) break;
    }
    return expired;
  }
}
