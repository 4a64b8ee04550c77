--[[
  releaseOrder: cancels a pending order (its owner, or an operator), giving its quantity back to
  stock and to the user's limit exactly once. A cancel at or after the deadline expires the order
  instead (the sweeper's expiries are expireDue's). An item that is delisted stays delisted:
  released stock never relists it (only an operator's relist or restock does).

  Every key is in the order's own stock shard slot {s<T>} (layout 2; T is the order id's last
  8 hex digits), the shard named by the order's `shard` field:
  KEYS[1] order hash      fs:{s<T>}:order:<orderId>
  KEYS[2] item hash       fs:{s<T>}:d11:phone-x:<k>:item       (the order's shard of its item)
  KEYS[3] live qty/user   fs:{s<T>}:d11:phone-x:<k>:users
  KEYS[4] outbox stream   fs:{s<T>}:d11:phone-x:<k>:outbox
  KEYS[5] deadlines zset  fs:{s<T>}:d11:phone-x:<k>:deadlines

  ARGV[1] userId of the caller ('' = any: operators)
  ARGV[2] nowMs
  ARGV[3] '1' while a payment outage holds deadlines: a late cancel cancels, it does not expire

  Returns
    {'RELEASED', status, reopened (0|1)}  status is cancelled, or expired at or after the
                                          deadline; reopened when the item went from sold out
                                          to available
    {'ALREADY', 'cancelled'}   cancelled before: a no-op, even after the deadline (a retried request)
    {'ORDER_NOT_FOUND'}        no such order, or another user's
    {'ORDER_ALREADY_PAID'}
    {'ORDER_EXPIRED'}          expired before (by the sweeper, a late payment or a late cancel)
    {'ORDER_REJECTED'}         accepted, then refused by Postgres's oversell guard (rejected_oversell)
]]
--- @include "includes/giveBack"
--- @include "includes/endUnpaid"

local order = redis.call('HMGET', KEYS[1], 'id', 'userId', 'status', 'quantity', 'expiresAt')
if not order[1] then return {'ORDER_NOT_FOUND'} end
if ARGV[1] ~= '' and order[2] ~= ARGV[1] then return {'ORDER_NOT_FOUND'} end
local status, now = order[3], tonumber(ARGV[2])

if status == 'paid' then return {'ORDER_ALREADY_PAID'} end
if status == 'cancelled' then return {'ALREADY', 'cancelled'} end
if status == 'expired' then return {'ORDER_EXPIRED'} end
if status == 'rejected_oversell' then return {'ORDER_REJECTED'} end

local target = 'cancelled'
if now >= tonumber(order[5]) and ARGV[3] ~= '1' then target = 'expired' end
local reopened = endUnpaid(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], order[1], order[2], tonumber(order[4]), target, now)
return {'RELEASED', target, reopened}
