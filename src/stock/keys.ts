// Redis key names, built here and never in Lua. Each script touches the keys of one hash slot,
// so it runs unchanged on Redis Cluster.
//
// Layout 2 (step 8): a sale's items spread over the cluster. Each item is split into K stock
// shards (K fixed when the sale is created, default 1); every shard has its own hash tag
// `{s<T>}`, T a 32-bit hash of (sale, SKU, shard), so its slot is its own and a hot item's shards
// land on different masters. A shard's slot holds everything one order touches: the shard's copy
// of the sale's window (startsAt, endsAt, paymentWindowMs, closedAt), its stock, its shoppers'
// live quantities, attempt counters, idempotency keys, order records, deadlines, outbox stream
// and transfer logs. A shopper always lands on one shard of an item (homeShard), so that shard's
// per-user count is the whole truth. Order ids carry T in their last 32 bits (order-id.ts), so a
// lookup by id goes straight to its slot. The sale's anchor hash keeps the sale's own tag.
// Every caller-chosen part (user id, idempotency key, and for consistency sale id, SKU, order id)
// is encoded with encodeKeyPart, so no part can contain ':' (two users, or a user and a key,
// can never join into the same name) nor '{' / '}' (the tag stays the first braces in every key).
import fnv1a from '@sindresorhus/fnv1a';
import { tagOfOrderId } from './order-id.ts';

// Left as they are: what ids are made of in practice, so keys stay readable.
const PLAIN = /^[A-Za-z0-9_.~-]$/;
// Every part of every order attempt is encoded: the common all-plain part is answered by one
// test of the whole string instead of one per character (measured: most of this module's time).
const ALL_PLAIN = /^[A-Za-z0-9_.~-]*$/;

function percentByte(byte: number): string {
  return `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
}

/**
 * An injective encoding of one caller-chosen part: letters, digits and `_.~-` as they are, every
 * other character as the %XX of its UTF-8 bytes (a lone surrogate, which UTF-8 cannot carry, as
 * %uXXXX). The result never holds ':', '{', '}' or a bare '%', and two parts encode alike only
 * when they are equal.
 */
export function encodeKeyPart(part: string): string {
  if (ALL_PLAIN.test(part)) return part;
  let encoded = '';
  for (const char of part) {
    const code = char.codePointAt(0) ?? 0;
    if (PLAIN.test(char)) encoded += char;
    else if (code >= 0xd800 && code <= 0xdfff) encoded += `%u${code.toString(16).toUpperCase()}`;
    else for (const byte of Buffer.from(char, 'utf8')) encoded += percentByte(byte);
  }
  return encoded;
}

/** encodeKeyPart's inverse: %XX runs are UTF-8 bytes, %uXXXX a lone surrogate; undefined when malformed. */
export function decodeKeyPart(encoded: string): string | undefined {
  try {
    return encoded
      .split(/(%u[0-9A-F]{4})/)
      .map((part) => (part.startsWith('%u') ? String.fromCharCode(parseInt(part.slice(2), 16)) : decodeURIComponent(part)))
      .join('');
  } catch {
    return undefined;
  }
}

/**
 * FNV-1a (32 bits) of a string's UTF-8 bytes. Shard tags and home shards are derived from it, and
 * live data sits where it points: the function must never change (test/unit/keys.test.ts pins
 * golden values).
 */
export function fnv1a32(text: string): number {
  return Number(fnv1a(text, { size: 32 }));
}

/** The hash-tag number of an item's stock shard: where the shard and its orders live. */
export function shardTag(saleId: string, sku: string, shard: number): number {
  return fnv1a32(`${encodeKeyPart(saleId)}:${encodeKeyPart(sku)}:${shard}`);
}

/** T written as the 8 hex digits order ids end with. */
export function tagHex(tag: number): string {
  return tag.toString(16).padStart(8, '0');
}

/** The shard of an item (of `shards`) a shopper always orders from. */
export function homeShard(userId: string, shards: number): number {
  return shards === 1 ? 0 : fnv1a32(userId) % shards;
}

/** One stock shard of one item. */
export interface ShardRef {
  readonly saleId: string;
  readonly sku: string;
  /** 0 .. shards - 1 */
  readonly shard: number;
  /** K: how many shards the item has (never changes). */
  readonly shards: number;
}

export interface ShardKeys {
  /** T: the number in this shard's hash tag, and in the last 32 bits of its orders' ids. */
  readonly tag: number;
  /** The sale's window as this shard knows it: startsAt, endsAt, paymentWindowMs, closedAt, ordersAccepted. */
  readonly sale: string;
  /**
   * The shard's stock: sku, shard, shards, available, unitPrice, perUserLimit, delisted,
   * delistedAt, soldOutAt, outPending (units debited by transfers not yet credited).
   * Shard 0 only: total and lowUnits | lowPct (K = 1: the low-stock rule decided in the scripts;
   * K > 1: the level restockItem tops `held` up to), and K > 1: held (the level's units, never
   * sold or transferred).
   */
  readonly item: string;
  /** userId -> live quantity, for users whose home is this shard. */
  readonly users: string;
  readonly outbox: string;
  readonly deadlines: string;
  /** Which expiry sweeper works the shard's deadlines for now (a short lease). */
  readonly sweepLease: string;
  /** Transfers debited here: transferId -> record (see lua/transferOut). */
  readonly transfersOut: string;
  /** Transfers debited here and not yet known credited, scored by time (for recovery). */
  readonly transfersSent: string;
  /** Transfers credited here: transferId -> quantity (dedup). */
  readonly transfersIn: string;
  idempotency(userId: string, key: string): string;
  order(orderId: string): string;
  /** The user's order attempts on the item in one clock second (ms since the epoch ÷ 1000, floored). */
  attempts(userId: string, second: number): string;
}

// A shard's names never change, and every order asks for its shard's twice: FNV-1a and the
// encodings cost about 4 % of the API's CPU per order in a profile of the in-stock bench. Each
// shard's are built once and kept (frozen) in a bounded map, emptied whole when full: sale ids and
// SKUs in requests are callers', so the map must not grow with them.
const SHARD_KEYS_KEPT = 10_000;
const shardKeysKept = new Map<string, ShardKeys>();

export function shardKeys(prefix: string, saleId: string, sku: string, shard: number): ShardKeys {
  // JSON, not a separator: no caller string can make two shards' ids equal.
  const id = JSON.stringify([prefix, saleId, sku, shard]);
  let keys = shardKeysKept.get(id);
  if (keys === undefined) {
    if (shardKeysKept.size >= SHARD_KEYS_KEPT) shardKeysKept.clear();
    keys = Object.freeze(buildShardKeys(prefix, saleId, sku, shard));
    shardKeysKept.set(id, keys);
  }
  return keys;
}

function buildShardKeys(prefix: string, saleId: string, sku: string, shard: number): ShardKeys {
  const tag = shardTag(saleId, sku, shard);
  const slot = `${prefix}:{s${tagHex(tag)}}`;
  const base = `${slot}:${encodeKeyPart(saleId)}:${encodeKeyPart(sku)}:${shard}`;
  const enc = encodeKeyPart;
  return {
    tag,
    sale: `${base}:sale`,
    item: `${base}:item`,
    users: `${base}:users`,
    outbox: `${base}:outbox`,
    deadlines: `${base}:deadlines`,
    sweepLease: `${base}:sweep-lease`,
    transfersOut: `${base}:xfer-out`,
    transfersSent: `${base}:xfer-sent`,
    transfersIn: `${base}:xfer-in`,
    idempotency: (userId, key) => `${base}:idem:${enc(userId)}:${enc(key)}`,
    // Named by the slot, not the shard: a lookup knows only the id (and so T).
    order: (orderId) => `${slot}:order:${enc(orderId)}`,
    attempts: (userId, second) => `${base}:attempts:${enc(userId)}:${second}`,
  };
}

/** The order's record, found from its id alone (T is its last 8 hex digits); undefined for a non-order id. */
export function orderKeyOf(prefix: string, orderId: string): string | undefined {
  const tag = tagOfOrderId(orderId);
  return tag === undefined ? undefined : `${prefix}:{s${tagHex(tag)}}:order:${encodeKeyPart(orderId)}`;
}

/** The sale's anchor hash (its own tag): window, closedAt (the first close wins), layout, items' K. */
export function anchorKey(prefix: string, saleId: string): string {
  return `${prefix}:{${encodeKeyPart(saleId)}}:sale`;
}

/** The shopper's index of recent orders (id scored by createdAt), in the user's own slot. */
export function userOrdersKey(prefix: string, userId: string): string {
  return `${prefix}:{u:${encodeKeyPart(userId)}}:orders`;
}

/** Pub/sub channel on which stock reopenings (restock, relist, release) are announced. */
export const stockEventsChannel = (prefix: string) => `${prefix}:stock-events`;
