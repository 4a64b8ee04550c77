--[[
  payOrder: records the payment provider's confirmation for a pending order. At or after its
  payment deadline the order expires instead (its stock released here, once), so a payment racing
  the expiry has exactly one winner.

  Every key is in the order's own stock shard slot {s<T>} (layout 2; T is the order id's last
  8 hex digits), the shard named by the order's `shard` field:
  KEYS[1] order hash      fs:{s<T>}:order:<orderId>
  KEYS[2] item hash       fs:{s<T>}:d11:phone-x:<k>:item       (the order's shard of its item)
  KEYS[3] live qty/user   fs:{s<T>}:d11:phone-x:<k>:users
  KEYS[4] outbox stream   fs:{s<T>}:d11:phone-x:<k>:outbox
  KEYS[5] deadlines zset  fs:{s<T>}:d11:phone-x:<k>:deadlines

  ARGV[1] userId of the caller ('' = any: operators)
  ARGV[2] paymentRef (1-128 chars)
  ARGV[3] nowMs
  ARGV[4] '1' while a payment outage holds deadlines: lateness does not expire the order

  Returns
    {'PAID'}                   paid now
    {'ALREADY_PAID'}           paid before with this same reference (a no-op)
    {'ORDER_NOT_FOUND'}        no such order, or another user's
    {'ORDER_ALREADY_PAID'}     paid before with another reference
    {'ORDER_CANCELLED'}
    {'ORDER_EXPIRED'}          expired before
    {'ORDER_REJECTED'}         accepted, then refused by Postgres's oversell guard (rejected_oversell)
    {'EXPIRED_NOW', reopened (0|1)}  the deadline had passed: expired now, its stock released;
                                     reopened when the item went from sold out to available
]]
--- @include "includes/giveBack"
--- @include "includes/endUnpaid"

local order = redis.call('HMGET', KEYS[1], 'id', 'userId', 'status', 'quantity', 'expiresAt', 'paymentRef')
if not order[1] then return {'ORDER_NOT_FOUND'} end
if ARGV[1] ~= '' and order[2] ~= ARGV[1] then return {'ORDER_NOT_FOUND'} end
local status, now = order[3], tonumber(ARGV[3])
if status == 'paid' then
  if order[6] == ARGV[2] then return {'ALREADY_PAID'} end
  return {'ORDER_ALREADY_PAID'}
end
if status == 'cancelled' then return {'ORDER_CANCELLED'} end
if status == 'expired' then return {'ORDER_EXPIRED'} end
if status == 'rejected_oversell' then return {'ORDER_REJECTED'} end

if now >= tonumber(order[5]) and ARGV[4] ~= '1' then
  local reopened = endUnpaid(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], order[1], order[2], tonumber(order[4]), 'expired', now)
  return {'EXPIRED_NOW', reopened}
end
redis.call('HSET', KEYS[1], 'status', 'paid', 'paidAt', now, 'paymentRef', ARGV[2])
redis.call('ZREM', KEYS[5], order[1])
redis.call('XADD', KEYS[4], '*', unpack(redis.call('HGETALL', KEYS[1])))
return {'PAID'}
