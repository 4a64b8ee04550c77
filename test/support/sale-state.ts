// Direct reads of a sale's Redis state (key layout 2: the anchor, each item's stock shards, their
// orders), so tests can check what the scripts wrote without going through the service. Shared
// by the Lua and HTTP fixtures; `source` is read on each call, so it may name a client that is
// opened later. An item's K is read from the sale's anchor.
import type { Redis } from 'ioredis';
import { itemsOfAnchor } from '../../src/stock/scripts/load-sale.ts';
import { anchorKey, encodeKeyPart, orderKeyOf, shardKeys, tagHex, userOrdersKey, type ShardKeys } from '../../src/stock/keys.ts';
import { scanKeys as scanRedisKeys } from '../../tools/redis-keys.ts';

/**
 * The keys of one stock shard (shard 0 unless told) of `sku` (phone-x unless told), shaped like
 * layout 1's for tests written against K = 1: `sale`, `outbox`, `deadlines`, `idempotency` and
 * `attempts` are that shard's; `item(other)` and `users(other)` name the same shard of any item;
 * `anchor` is the sale's own hash.
 */
export function shardZeroKeys(prefix: string, saleId: string, sku = 'phone-x', shard = 0) {
  const keys = shardKeys(prefix, saleId, sku, shard);
  return {
    tag: keys.tag,
    anchor: anchorKey(prefix, saleId),
    sale: keys.sale,
    outbox: keys.outbox,
    deadlines: keys.deadlines,
    idempotency: keys.idempotency,
    attempts: keys.attempts,
    item: (other = sku) => shardKeys(prefix, saleId, other, shard).item,
    users: (other = sku) => shardKeys(prefix, saleId, other, shard).users,
    order: (orderId: string) => orderKeyOf(prefix, orderId) ?? keys.order(orderId),
    userOrders: (userId: string) => userOrdersKey(prefix, userId),
  };
}

export interface SaleState {
  /** Chosen fields of an item's shard hash (shard 0 unless told), in order (null where a field is absent). */
  itemFields(saleId: string, sku: string, ...fields: string[]): Promise<(string | null)[]>;
  /** The whole item hash of shard 0. */
  itemHash(saleId: string, sku: string, shard?: number): Promise<Record<string, string>>;
  /** Σ available over the item's shards (held units not counted); throws if the item has none. */
  available(saleId: string, sku: string): Promise<number>;
  /** Every user's live quantity of an item, over all its shards, as the reserve script counts it. */
  liveQuantities(saleId: string, sku: string): Promise<Record<string, string>>;
  /** One user's live quantity of an item, 0 when they hold none. */
  liveQuantity(saleId: string, sku: string, userId: string): Promise<number>;
  /** Entries in every outbox of every shard of the sale. */
  outboxLength(saleId: string): Promise<number>;
  /** The sale's items with their K, as its anchor lists them. */
  itemsOf(saleId: string): Promise<{ sku: string; shards: number }[]>;
  /** Every key matching `pattern`, sorted. */
  scanKeys(pattern: string): Promise<string[]>;
  /** Every key of the sale (anchor, shards, their orders) with its content: what "writes nothing" is checked against. */
  snapshot(saleId: string): Promise<Record<string, unknown>>;
}

export function saleState(source: () => { redis: Redis; prefix: string }): SaleState {
  /** Every key matching `pattern`, sorted. */
  const scanKeys = (pattern: string): Promise<string[]> => scanRedisKeys(source().redis, pattern);

  async function itemsOf(saleId: string): Promise<{ sku: string; shards: number }[]> {
    const { redis, prefix } = source();
    return itemsOfAnchor(await redis.hgetall(anchorKey(prefix, saleId)));
  }

  async function shardsOf(saleId: string, sku: string) {
    const { prefix } = source();
    const item = (await itemsOf(saleId)).find((candidate) => candidate.sku === sku);
    return Array.from({ length: item?.shards ?? 1 }, (_, k) => shardKeys(prefix, saleId, sku, k));
  }

  return {
    itemFields: (saleId, sku, ...fields) => source().redis.hmget(shardKeys(source().prefix, saleId, sku, 0).item, ...fields),
    itemHash: (saleId, sku, shard = 0) => source().redis.hgetall(shardKeys(source().prefix, saleId, sku, shard).item),
    async available(saleId, sku) {
      const values = await Promise.all((await shardsOf(saleId, sku)).map((keys) => source().redis.hget(keys.item, 'available')));
      if (values.some((value) => value === null)) throw new Error(`no item ${sku} in sale ${saleId}`);
      return values.reduce((total, value) => total + Number(value), 0);
    },
    async liveQuantities(saleId, sku) {
      const hashes = await Promise.all((await shardsOf(saleId, sku)).map((keys) => source().redis.hgetall(keys.users)));
      return Object.assign({}, ...hashes) as Record<string, string>;
    },
    async liveQuantity(saleId, sku, userId) {
      const values = await Promise.all((await shardsOf(saleId, sku)).map((keys) => source().redis.hget(keys.users, userId)));
      return values.reduce((total, value) => total + Number(value ?? 0), 0);
    },
    async outboxLength(saleId) {
      const { redis, prefix } = source();
      const items = await itemsOf(saleId);
      const lengths = await Promise.all(
        items.flatMap((item) => Array.from({ length: item.shards }, (_, k) => redis.xlen(shardKeys(prefix, saleId, item.sku, k).outbox))),
      );
      return lengths.reduce((total, length) => total + length, 0);
    },
    itemsOf,
    scanKeys,
    async snapshot(saleId) {
      const { redis, prefix } = source();
      const patterns = [`${prefix}:{${encodeKeyPart(saleId)}}:*`, `${prefix}:{s*}:${encodeKeyPart(saleId)}:*`];
      // Orders sit in their shard's slot, named by the tag only.
      for (const item of await itemsOf(saleId)) {
        for (let k = 0; k < item.shards; k++) patterns.push(`${prefix}:{s${tagHex(shardKeys(prefix, saleId, item.sku, k).tag)}}:order:*`);
      }
      const keys = [...new Set((await Promise.all(patterns.map((pattern) => scanKeys(pattern)))).flat())].sort();
      const state: Record<string, unknown> = {};
      for (const key of keys) {
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

/** The keys of every stock shard of a loaded sale, read from its anchor (each item's K). */
export async function shardKeysOfSale(redis: Redis, prefix: string, saleId: string): Promise<ShardKeys[]> {
  const items = itemsOfAnchor(await redis.hgetall(anchorKey(prefix, saleId)));
  return items.flatMap(({ sku, shards }) => Array.from({ length: shards }, (_, shard) => shardKeys(prefix, saleId, sku, shard)));
}

/** The keys of a one-item, one-shard sale's only stock shard (throws for any other sale). */
export async function soleShardKeys(redis: Redis, prefix: string, saleId: string): Promise<ShardKeys> {
  const [only, ...more] = await shardKeysOfSale(redis, prefix, saleId);
  if (!only || more.length > 0) throw new Error(`sale ${saleId} does not have exactly one stock shard`);
  return only;
}
