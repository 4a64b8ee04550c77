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

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly partitions: number,
    private readonly holder: string,
    private readonly leaseMs: number,
  ) {
    this.offset = fnv1a32(holder) % partitions;
  }

  /** Renews what it holds, hands back what exceeds its share, takes free partitions up to it. */
  async renew(now = Date.now()): Promise<ReadonlySet<number>> {
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
      if (this.held.has(partition)) await this.release(partition);
    }
    for (const partition of order) {
      if (this.held.size >= share) break;
      if (this.held.has(partition)) continue;
      if ((await this.redis.set(leaseKey(this.prefix, partition), this.holder, 'PX', this.leaseMs, 'NX')) === 'OK') this.held.add(partition);
    }
    return new Set(this.held);
  }

  /** Hands every lease back (a graceful stop), so others take the partitions at once. */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.held].map((partition) => this.release(partition)));
    await this.redis.zrem(membersKey(this.prefix), this.holder);
  }

  current(): ReadonlySet<number> {
    return new Set(this.held);
  }

  private async keep(partition: number): Promise<boolean> {
    const key = leaseKey(this.prefix, partition);
    if ((await this.redis.get(key)) !== this.holder) return false;
    await this.redis.pexpire(key, this.leaseMs);
    return true;
  }

  private async release(partition: number): Promise<void> {
    this.held.delete(partition);
    const key = leaseKey(this.prefix, partition);
    if ((await this.redis.get(key)) === this.holder) await this.redis.del(key);
  }
}
