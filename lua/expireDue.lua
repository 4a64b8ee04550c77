--[[
  expireDue: the sweeper's batch expiry on one stock shard. In one atomic step, expires every
  given order that is still pending at or after its deadline: its units back to the shard's stock
  and its user's allowance there, status expired, off the shard's deadlines, its new state in the
  shard's outbox (endUnpaid, as a late payment or a late cancel would). Orders paid, cancelled or
  expired meanwhile, or not yet due, are left as they are, so a payment or cancel racing the
  sweeper has one winner and several sweepers expire each order once. Released stock never
  relists a delisted item.

  Every key is in the shard's slot {s<T>} (layout 2):
  KEYS[1] outbox stream   fs:{s<T>}:d11:phone-x:<k>:outbox
  KEYS[2] deadlines zset  fs:{s<T>}:d11:phone-x:<k>:deadlines
  KEYS[3] item hash       fs:{s<T>}:d11:phone-x:<k>:item
  KEYS[4] live qty/user   fs:{s<T>}:d11:phone-x:<k>:users
  KEYS[5..n] one order hash per order to expire (fs:{s<T>}:order:<orderId>)

  ARGV[1] nowMs
  ARGV[2] the shard's SKU
  ARGV[3] the shard's number k
  ARGV[4..n] the orders' ids, in the order of their keys (ARGV[k - 1] is the id of KEYS[k])

  Every order is read before anything is written: an order whose SKU or shard is not the
  shard's is a caller's bug, refused with nothing written (its units must go back to the shard
  that sold them, never to another).

  An id whose record is gone (it outlived every use and its TTL ran out) is dropped from the
  deadlines: nothing is left to give back, and it must not come due again every round.

  Returns
    {'EXPIRED', units, reopened (0|1), {orderId...}, {goneId...}}
        the units given back, whether the shard went from no stock to available (listed) in
        this batch, the ids of the orders expired now, and those dropped for want of a record
    {'WRONG_SHARD', orderId}  an order of another item or shard was given: nothing written
]]
--- @include "includes/giveBack"
--- @include "includes/endUnpaid"

local now = tonumber(ARGV[1])

-- Read every order first: the due pending ones.
local due, gone = {}, {}
for k = 5, #KEYS do
  local order = redis.call('HMGET', KEYS[k], 'id', 'userId', 'status', 'quantity', 'expiresAt', 'sku', 'shard')
  if not order[1] then
    gone[#gone + 1] = ARGV[k - 1]
  else
    if order[6] ~= ARGV[2] or order[7] ~= ARGV[3] then return {'WRONG_SHARD', order[1]} end
    if order[3] == 'pending_payment' and now >= tonumber(order[5]) then
      due[#due + 1] = {k, order}
    end
  end
end

local units, reopened, expired = 0, 0, {}
for _, entry in ipairs(due) do
  local k, order = entry[1], entry[2]
  local quantity = tonumber(order[4])
  if endUnpaid(KEYS[k], KEYS[3], KEYS[4], KEYS[1], KEYS[2], order[1], order[2], quantity, 'expired', now) == 1 then reopened = 1 end
  units = units + quantity
  expired[#expired + 1] = order[1]
end
if #gone > 0 then redis.call('ZREM', KEYS[2], unpack(gone)) end
return {'EXPIRED', units, reopened, expired, gone}
