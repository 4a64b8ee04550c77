// K of an item at request time: read from the sale's anchor (HMGET startsAt shards:<sku>) once
// per (sale, SKU) per process, then from memory, since K never changes. The anchor is written
// last when a sale is loaded, so a K read here names shards that are all loaded.
import type { RedisClient } from '../redis/connection.ts';
import { anchorKey } from './keys.ts';
import { anchorShardsField } from './scripts/load-sale.ts';

export type UnknownItem = 'SALE_NOT_FOUND' | 'ITEM_NOT_FOUND';

export class ShardCounts {
  private readonly known = new Map<string, number>();

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    /** Bound on memory: past it the cache starts over (K is re-read, never wrong). */
    private readonly maxKnown = 100_000,
  ) {}

  /** K, or why the item is unknown (never cached: a sale may be created a moment later). */
  async of(saleId: string, sku: string): Promise<number | UnknownItem> {
    const key = `${saleId}\u0000${sku}`;
    const cached = this.known.get(key);
    if (cached !== undefined) return cached;
    const [startsAt, shards] = await this.redis.hmget(anchorKey(this.prefix, saleId), 'startsAt', anchorShardsField(sku));
    if (startsAt === null) return 'SALE_NOT_FOUND';
    if (shards === null) return 'ITEM_NOT_FOUND';
    const count = Number(shards);
    if (!Number.isInteger(count) || count < 1) throw new Error(`sale ${saleId} item ${sku}: the anchor holds K = ${shards}`);
    if (this.known.size >= this.maxKnown) this.known.clear();
    this.known.set(key, count);
    return count;
  }
}
