// Direct reads of a sale's Redis state (item hash, users hash, outbox, every key), so tests can
// check what the scripts wrote without going through the service. Shared by the Lua and HTTP
// fixtures; `source` is read on each call, so it may name a client that is opened later.
import type { Redis } from 'ioredis';
import { saleKeys } from '../../src/stock/keys.ts';
import { scanKeys as scanRedisKeys } from '../../tools/redis-keys.ts';

export interface SaleState {
  /** Chosen fields of an item hash, in order (null where a field is absent). */
  itemFields(saleId: string, sku: string, ...fields: string[]): Promise<(string | null)[]>;
  /** The whole item hash. */
  itemHash(saleId: string, sku: string): Promise<Record<string, string>>;
  /** Redis's own count of an item's available units; throws if the item has none. */
  available(saleId: string, sku: string): Promise<number>;
  /** Every user's live quantity of an item, as the reserve script counts it. */
  liveQuantities(saleId: string, sku: string): Promise<Record<string, string>>;
  /** One user's live quantity of an item, 0 when they hold none. */
  liveQuantity(saleId: string, sku: string, userId: string): Promise<number>;
  outboxLength(saleId: string): Promise<number>;
  /** Every key matching `pattern`, sorted. */
  scanKeys(pattern: string): Promise<string[]>;
  /** Every key of the sale with its content: what "writes nothing" is checked against. */
  snapshot(saleId: string): Promise<Record<string, unknown>>;
}

export function saleState(source: () => { redis: Redis; prefix: string }): SaleState {
  const keysOf = (saleId: string) => saleKeys(source().prefix, saleId);

  /** Every key matching `pattern`, sorted. */
  const scanKeys = (pattern: string): Promise<string[]> => scanRedisKeys(source().redis, pattern);

  return {
    itemFields: (saleId, sku, ...fields) => source().redis.hmget(keysOf(saleId).item(sku), ...fields),
    itemHash: (saleId, sku) => source().redis.hgetall(keysOf(saleId).item(sku)),
    async available(saleId, sku) {
      const value = await source().redis.hget(keysOf(saleId).item(sku), 'available');
      if (value === null) throw new Error(`no item ${sku} in sale ${saleId}`);
      return Number(value);
    },
    liveQuantities: (saleId, sku) => source().redis.hgetall(keysOf(saleId).users(sku)),
    liveQuantity: async (saleId, sku, userId) => Number((await source().redis.hget(keysOf(saleId).users(sku), userId)) ?? '0'),
    outboxLength: (saleId) => source().redis.xlen(keysOf(saleId).outbox),
    scanKeys,
    async snapshot(saleId) {
      const { redis, prefix } = source();
      const state: Record<string, unknown> = {};
      for (const key of await scanKeys(`${prefix}:{${saleId}}:*`)) {
        const type = await redis.type(key);
        if (type === 'hash') state[key] = await redis.hgetall(key);
        else if (type === 'zset') state[key] = await redis.zrange(key, 0, -1, 'WITHSCORES');
        else if (type === 'stream') state[key] = await redis.xrange(key, '-', '+');
        else if (type === 'string') state[key] = await redis.get(key);
        else state[key] = type;
      }
      return state;
    },
  };
}
