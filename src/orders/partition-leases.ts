// Which persistence partitions this process works: a renewable lease per partition (SET NX PX,
// in the partition's own slot), so one process at a time persists a partition and another takes
// it over once the lease runs out after a crash. Processes share the partitions out: each
// announces itself in a members set (expiring entries) and holds at most its fair share,
// ceil(partitions / live processes), handing back the rest so a newcomer gets some.
//
// Two holders of one partition for a moment (a renewal racing an expiry, a process stalled past
// its lease) cost only duplicated work: the consumer group hands each entry to one reader, a
// batch is acknowledged only after Postgres committed it, and the writer is idempotent.
import type { RedisClient } from '../redis/connection.ts';
import { fnv1a32 } from '../stock/keys.ts';
import { partitionTag } from './queue.ts';

export function leaseKey(prefix: string, partition: number): string {
  return `${partitionTag(prefix, partition)}:lease`;
}

export function membersKey(prefix: string): string {
  return `{${prefix}:persist}:members`;
}

export class PartitionLeases {
  private readonly held = new Set<number>();
  /** Where this holder starts looking for free partitions: spread, so processes do not all race for partition 0. */
  private readonly offset: number;
  private inFlight: Promise<ReadonlySet<number>> | undefined;
  private lastRenewedAt = 0;
  private reported = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly partitions: number,
    private readonly holder: string,
    private readonly leaseMs: number,
    /** Told the partitions held after each change. */
    private readonly onChange: (held: ReadonlySet<number>) => void = () => {},
  ) {
    this.offset = fnv1a32(holder) % partitions;
  }

  current(): ReadonlySet<number> {
    return new Set(this.held);
  }

  /** Renews every third of a lease on a timer of its own, so a caller held up (a long Postgres
   *  write) does not lose its partitions. */
  start(): void {
    this.timer ??= setInterval(() => void this.renew().catch(() => undefined), this.leaseMs / 3);
  }

  /** The partitions held, renewed first when a third of a lease has passed since the last renewal. */
  async renewIfDue(now = Date.now()): Promise<ReadonlySet<number>> {
    return now - this.lastRenewedAt >= this.leaseMs / 3 ? this.renew(now) : this.current();
  }

  /** Renews what it holds, hands back what exceeds its share, takes free partitions up to it (one
   *  renewal at a time). */
  renew(now = Date.now()): Promise<ReadonlySet<number>> {
    this.inFlight ??= this.renewNow(now)
      .then((held) => {
        this.lastRenewedAt = now;
        this.report(held);
        return held;
      })
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }

  /** Stops renewing and hands every lease back (a graceful stop), so others take the partitions at once. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => undefined);
    const held = [...this.held];
    this.held.clear();
    this.report(this.held);
    await Promise.all(held.map((partition) => this.release(partition)));
    await this.redis.zrem(membersKey(this.prefix), this.holder);
  }

  private report(held: ReadonlySet<number>): void {
    const text = [...held].sort((a, b) => a - b).join(',');
    if (text === this.reported) return;
    this.reported = text;
    this.onChange(new Set(held));
  }

  private async renewNow(now: number): Promise<ReadonlySet<number>> {
    const members = membersKey(this.prefix);
    const reply = await this.redis.multi().zadd(members, now + this.leaseMs, this.holder).zremrangebyscore(members, '-inf', now).zcard(members).pexpire(members, this.leaseMs * 10).exec();
    const live = Math.max(1, Number(reply?.[2]?.[1] ?? 1));
    const share = Math.ceil(this.partitions / live);

    await Promise.all([...this.held].map(async (partition) => {
      if (!(await this.keep(partition))) this.held.delete(partition);
    }));
    const order = Array.from({ length: this.partitions }, (_, i) => (this.offset + i) % this.partitions);
    // Over its share (others joined): the last ones in its own order go back first.
    for (const partition of [...order].reverse()) {
      if (this.held.size <= share) break;
      if (this.held.has(partition)) {
        this.held.delete(partition);
        await this.release(partition);
      }
    }
    for (const partition of order) {
      if (this.held.size >= share) break;
      if (this.held.has(partition)) continue;
      if ((await this.redis.set(leaseKey(this.prefix, partition), this.holder, 'PX', this.leaseMs, 'NX')) === 'OK') this.held.add(partition);
    }
    return this.current();
  }

  private async keep(partition: number): Promise<boolean> {
    const key = leaseKey(this.prefix, partition);
    if ((await this.redis.get(key)) !== this.holder) return false;
    await this.redis.pexpire(key, this.leaseMs);
    return true;
  }

  /** Deletes the lease if it is still this holder's. */
  private async release(partition: number): Promise<void> {
    const key = leaseKey(this.prefix, partition);
    if ((await this.redis.get(key)) === this.holder) await this.redis.del(key);
  }
}
