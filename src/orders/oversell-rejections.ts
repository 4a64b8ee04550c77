// The Redis side of an oversell rejection. Once Postgres has recorded an order as
// `rejected_oversell`, its live record must stop acting as a live order: a payment must not
// charge for it, and an expiry must not hand its units back — they never existed (Redis had lost
// the writes that counted them, which is how it came to sell them twice), so giving them back
// would sell them a third time and reject another buyer. One script, on the order's slot, turns
// a still-live record (pending or already paid) into a rejection: status and time set, off the
// deadlines, off its buyer's live quantity, stock left as it is. A record that ended meanwhile
// (cancelled or expired in the instant since the write) is left alone: Postgres holds the truth.
//
// Run with EVAL rather than registered with the hot-path scripts: it runs once per rejected
// order, only after Redis lost writes.
import type { Logger } from '../logger.ts';
import type { RedisClient } from '../redis/connection.ts';
import { orderKeyOf, shardKeys } from '../stock/keys.ts';
import type { RejectedOrder } from './order-writer.ts';

/** How long a rejected order stays readable from Redis (Postgres answers after). */
const REJECTED_RETENTION_MS = 600_000;

// KEYS: order hash, deadlines zset, users hash (the order's own). ARGV: nowMs, retention ms.
const TAKE_OFF_LIVE_BOOKS = `
local order = redis.call('HMGET', KEYS[1], 'id', 'status', 'userId', 'quantity')
if not order[1] then return 'GONE' end
if order[2] ~= 'pending_payment' and order[2] ~= 'paid' then return order[2] end
redis.call('HSET', KEYS[1], 'status', 'rejected_oversell', 'rejectedAt', ARGV[1])
redis.call('ZREM', KEYS[2], order[1])
if redis.call('HINCRBY', KEYS[3], order[3], -tonumber(order[4])) <= 0 then redis.call('HDEL', KEYS[3], order[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 'REJECTED'`;

/** The keys the script touches for one order: its record (named by its id), and its shard's
 *  deadlines and users (the shard its record names); undefined when the record is gone. */
export async function rejectionKeys(redis: RedisClient, prefix: string, order: RejectedOrder): Promise<[order: string, deadlines: string, users: string] | undefined> {
  const orderKey = orderKeyOf(prefix, order.id);
  const shard = orderKey === undefined ? null : await redis.hget(orderKey, 'shard');
  if (orderKey === undefined || shard === null) return undefined;
  const keys = shardKeys(prefix, order.saleId, order.sku, Number(shard));
  return [orderKey, keys.deadlines, keys.users];
}

/**
 * Best effort, after Postgres committed the rejections: a failure is logged, never thrown (the
 * batch is written; retrying it would not come back here). A record left live then is what
 * `npm run reconcile` reports as drift.
 */
export async function takeOffLiveBooks(redis: RedisClient, prefix: string, rejected: readonly RejectedOrder[], logger: Logger, now = Date.now()): Promise<void> {
  const results = await Promise.allSettled(
    rejected.map(async (order) => {
      const keys = await rejectionKeys(redis, prefix, order);
      // No record left (expired): nothing acts on it any more, and Postgres answers for it.
      if (keys) await redis.eval(TAKE_OFF_LIVE_BOOKS, 3, ...keys, now, REJECTED_RETENTION_MS);
    }),
  );
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) {
    logger.error(
      { event: 'oversell_rejection_not_in_redis', failed: failed.length, err: (failed[0]!.reason as Error)?.message },
      'orders rejected in Postgres are still live in Redis; reconcile the sale',
    );
  }
}
