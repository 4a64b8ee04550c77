// Writing one rebuilt shard: one Lua script on the shard's slot (every key of a shard shares its
// tag), so the shard appears whole or not at all, and tens of thousands of orders cost one round
// trip and a few milliseconds of Redis instead of one command each. The shard's `sale` hash is
// written last: until it exists a reserve on the shard is refused (SALE_NOT_FOUND).
//
// The script writes nothing to a shard it finds whole (`sale` and `item` hashes both there): the
// rebuild decided from an earlier read, and that read may have come from a Cluster master that
// restarted empty and still answered for its slots for a moment while its promoted replica held
// the real shard, with orders not yet in Postgres. Only the atomic look at write time is trusted
// not to overwrite live decisions. (reconcile --fix fences a shard by deleting its `sale` hash
// first, so a forced rewrite passes.)
import type { Order } from '../orders/order.ts';
import type { RedisClient } from '../redis/connection.ts';
import { shardKeys } from '../stock/keys.ts';
import { ORDER_RETENTION_MS } from '../stock/scripts/reserve-order.ts';
import type { ShardPlan } from './plan.ts';

// KEYS[1] sale, [2] item, [3] users, [4] deadlines, [5] outbox; then one order hash per
// payload.orders entry; then one idempotency key per payload.idem entry.
// ARGV[1] JSON {sale, item: flat [field, value…], users: flat [user, qty…],
//               orders: [{fields: flat, expiresAt, keepUntil}], ids: [id…], idem: [[value, ttl]…],
//               moved: [flat outbox entry…]} — every value a string (Lua's tostring would turn
//               13-digit numbers into 1.7e+12).
// Arguments go to HSET/ZADD in chunks: unpack() has a stack limit of a few thousand values.
const WRITE_SHARD = `
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local p = cjson.decode(ARGV[1])
local function chunked(command, key, flat, width)
  local step = 1000 * width
  for i = 1, #flat, step do
    redis.call(command, key, unpack(flat, i, math.min(i + step - 1, #flat)))
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
chunked('HSET', KEYS[2], p.item, 2)
chunked('HSET', KEYS[3], p.users, 2)
local deadlines = {}
for i, order in ipairs(p.orders) do
  local key = KEYS[5 + i]
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(order.fields))
  redis.call('PEXPIREAT', key, order.keepUntil)
  deadlines[#deadlines + 1] = order.expiresAt
  deadlines[#deadlines + 1] = p.ids[i]
end
chunked('ZADD', KEYS[4], deadlines, 2)
for j, idem in ipairs(p.idem) do
  redis.call('SET', KEYS[5 + #p.orders + j], idem[1], 'EX', idem[2])
end
for _, entry in ipairs(p.moved) do
  redis.call('XADD', KEYS[5], '*', unpack(entry))
end
redis.call('HSET', KEYS[1], unpack(p.sale))
return #p.orders
`;

function flat(record: Record<string, string | number>): string[] {
  return Object.entries(record).flatMap(([field, value]) => [field, String(value)]);
}

/** The order hash as reserveOrder writes it (layout2.md), optional fields only when set. */
export function orderRecord(order: Order, shard: number): Record<string, string | number> {
  const record: Record<string, string | number> = {
    id: order.id,
    saleId: order.saleId,
    sku: order.sku,
    shard,
    userId: order.userId,
    quantity: order.quantity,
    unitPrice: order.unitPrice,
    amount: order.amount,
    status: order.status,
    createdAt: order.createdAt,
    expiresAt: order.expiresAt,
    idempotencyKey: order.idempotencyKey ?? '',
  };
  if (order.paidAt !== undefined) record.paidAt = order.paidAt;
  if (order.paymentRef !== undefined) record.paymentRef = order.paymentRef;
  if (order.cancelledAt !== undefined) record.cancelledAt = order.cancelledAt;
  if (order.expiredAt !== undefined) record.expiredAt = order.expiredAt;
  return record;
}

/**
 * Writes the planned shard (and, for a migrated sale, its unpersisted layout-1 outbox entries) in
 * one script; false when the shard was found whole and left as it was.
 */
export async function writeShard(redis: RedisClient, prefix: string, plan: ShardPlan, moved: readonly Order[]): Promise<boolean> {
  const { ref } = plan;
  const keys = shardKeys(prefix, ref.saleId, ref.sku, ref.shard);
  const payload = {
    sale: flat(plan.sale),
    item: flat(plan.item),
    users: [...plan.users].flatMap(([userId, quantity]) => [userId, String(quantity)]),
    orders: plan.pending.map((order) => ({
      fields: flat(orderRecord(order, ref.shard)),
      expiresAt: String(order.expiresAt),
      keepUntil: String(order.expiresAt + ORDER_RETENTION_MS),
    })),
    ids: plan.pending.map((order) => order.id),
    idem: plan.idempotency.map(({ value, ttlSeconds }) => [value, String(ttlSeconds)]),
    moved: moved.map((order) => flat(orderRecord(order, ref.shard))),
  };
  const dynamic = [...plan.pending.map((order) => keys.order(order.id)), ...plan.idempotency.map(({ userId, key }) => keys.idempotency(userId, key))];
  const written = await redis.eval(WRITE_SHARD, 5 + dynamic.length, keys.sale, keys.item, keys.users, keys.deadlines, keys.outbox, ...dynamic, JSON.stringify(payload));
  return written !== -1;
}
