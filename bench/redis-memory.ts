// What a service namespace costs in Redis: MEMORY USAGE summed over its keys (its prefix and its
// BullMQ queue's), by key family, so the expiry storm can report bytes per pending and per final
// order and say which keys hold them.
import type { Redis } from 'ioredis';
import { scanPages, servicePatterns } from '../tools/redis-keys.ts';

export interface MemoryFootprint {
  /** MEMORY USAGE summed over every key of the namespace. */
  readonly bytes: number;
  readonly keys: number;
  readonly byFamily: Readonly<Record<string, { readonly keys: number; readonly bytes: number }>>;
  /** INFO memory used_memory: the whole Redis, so other users of it show up here too. */
  readonly usedMemory: number;
}

/**
 * Collapses ids so keys group by what they are: order:<id>, a shard's outbox, the shopper index,
 * bull jobs, … Layout 2 tags collapse by kind: a stock shard's `{s<T>}` to `{shard}`, a
 * shopper's `{u:<user>}` to `{user}`, any other (a sale's anchor, layout 1) to `{sale}`.
 */
export function keyFamily(key: string, prefix: string): string {
  return key
    .replace(`{${prefix}:bull}`, '{bull}')
    .replace(`${prefix}:`, '')
    .replace(/\{[^}]*\}/, (tag) => (tag === '{bull}' ? tag : /^\{s[0-9a-f]{8}\}$/.test(tag) ? '{shard}' : tag.startsWith('{u:') ? '{user}' : '{sale}'))
    .replace(/:[^:]*\|[^:]*(?=:|$)/g, ':<job>') // BullMQ job ids: sale|first entry|last entry|count
    .replace(/shopper-\d+/g, '<user>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<id>')
    .replace(/:\d+(?=:|$)/g, ':<n>')
    .replace(/:[0-9A-Za-z_-]{16,}$/, ':<id>');
}

export async function footprint(redis: Redis, prefix: string): Promise<MemoryFootprint> {
  const keys: string[] = [];
  for (const pattern of servicePatterns(prefix)) for await (const page of scanPages(redis, pattern)) keys.push(...page);
  const byFamily: Record<string, { keys: number; bytes: number }> = {};
  let bytes = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    const batch = keys.slice(i, i + 1000);
    const pipeline = redis.pipeline();
    for (const key of batch) pipeline.memory('USAGE', key, 'SAMPLES', 0);
    const results = (await pipeline.exec()) ?? [];
    batch.forEach((key, j) => {
      const size = Number(results[j]?.[1] ?? 0); // a key that expired meanwhile answers null
      const entry = (byFamily[keyFamily(key, prefix)] ??= { keys: 0, bytes: 0 });
      entry.keys += 1;
      entry.bytes += size;
      bytes += size;
    });
  }
  const usedMemory = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);
  return { bytes, keys: keys.length, byFamily, usedMemory };
}

/** What each order added to the namespace at one moment, against a baseline taken before any. */
export interface PerOrder {
  readonly footprint: MemoryFootprint;
  /** Bytes per order beyond the baseline. */
  readonly bytes: number;
  /** The same by key family, largest first (families that grew by at least a byte per order). */
  readonly byFamily: Readonly<Record<string, number>>;
}

export function perOrder(baseline: MemoryFootprint, measured: MemoryFootprint, orders: number): PerOrder {
  const count = Math.max(1, orders);
  const byFamily = Object.entries(measured.byFamily)
    .map(([family, entry]) => [family.replace(/^\{(?:sale|shard|user)\}:/, ''), (entry.bytes - (baseline.byFamily[family]?.bytes ?? 0)) / count] as const)
    .filter(([, bytes]) => bytes >= 1)
    .sort(([, a], [, b]) => b - a);
  return { footprint: measured, bytes: (measured.bytes - baseline.bytes) / count, byFamily: Object.fromEntries(byFamily) };
}

/** "order:<id> 344 B, user-orders:<user> 168 B, …": the five largest families of one PerOrder. */
export function describePerOrder(perOrder: PerOrder): string {
  const top = Object.entries(perOrder.byFamily).slice(0, 5);
  return top.length === 0 ? 'nothing' : top.map(([family, bytes]) => `${family} ${Math.round(bytes)} B`).join(', ');
}
