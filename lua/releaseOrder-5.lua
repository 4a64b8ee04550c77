--[[
  releaseOrder: cancels a pending order (its owner) or expires it (the sweeper, at its deadline),
  giving its quantity back to stock and to the user's limit exactly once. A cancel at or after
  the deadline expires the order instead. An item that is delisted stays delisted: released stock
  never relists it (only an operator's relist or restock does).

  KEYS[1] order hash      fs:{d11}:order:<orderId>
  KEYS[2] item hash       fs:{d11}:item:phone-x     (the order's item)
  KEYS[3] live qty/user   fs:{d11}:users:phone-x
  KEYS[4] outbox stream   fs:{d11}:outbox
  KEYS[5] deadlines zset  fs:{d11}:deadlines

  ARGV[1] 'cancel' or 'expire'
  ARGV[2] userId of the caller ('' = any: the sweeper, operators)
  ARGV[3] nowMs

  Returns
    {'RELEASED', status, reopened (0|1)}  status is cancelled or expired; reopened when the item
                                          went from sold out to available
    {'ALREADY', status}        already in the state asked for (a no-op)
    {'NOT_DUE'}                expire asked before the deadline
    {'ORDER_NOT_FOUND'}        no such order, or another user's
    {'ORDER_ALREADY_PAID'}
    {'ORDER_EXPIRED'}          cancel asked of an order that expired earlier
    {'ORDER_CANCELLED'}        expire asked of an order cancelled earlier
]]
--- @include "includes/giveBack"
--- @include "includes/endUnpaid"

local order = redis.call('HMGET', KEYS[1], 'id', 'userId', 'status', 'quantity', 'expiresAt')
if not order[1] then return {'ORDER_NOT_FOUND'} end
if ARGV[2] ~= '' and order[2] ~= ARGV[2] then return {'ORDER_NOT_FOUND'} end
local action, status, now = ARGV[1], order[3], tonumber(ARGV[3])
local target = 'cancelled'
if action == 'expire' or now >= tonumber(order[5]) then target = 'expired' end

if status == 'paid' then return {'ORDER_ALREADY_PAID'} end
-- A repeated cancel is a no-op even after the deadline (a retried request).
if status == target or (action == 'cancel' and status == 'cancelled') then return {'ALREADY', status} end
if status == 'expired' then return {'ORDER_EXPIRED'} end
if status == 'cancelled' then return {'ORDER_CANCELLED'} end
if action == 'expire' and now < tonumber(order[5]) then return {'NOT_DUE'} end

local reopened = endUnpaid(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], order[1], order[2], tonumber(order[4]), target, now)
return {'RELEASED', target, reopened}
