--[[
  expireDue: the sweeper's batch expiry. In one atomic step, expires every given order that is
  still pending at or after its deadline: its units back to its item's stock and its user's
  allowance, status expired, off the deadlines, its new state in the outbox (endUnpaid, as a
  late payment or a late cancel would). Orders paid, cancelled or expired meanwhile, or not yet
  due, are left as they are, so a payment or cancel racing the sweeper has one winner and several
  sweepers expire each order once. Released stock never relists a delisted item.

  KEYS[1] outbox stream   fs:{d11}:outbox
  KEYS[2] deadlines zset  fs:{d11}:deadlines
  KEYS[3..n] first, for each of the ARGV[2] items, its item hash (fs:{d11}:item:phone-x) and its
             live qty/user hash (fs:{d11}:users:phone-x); then one order hash
             (fs:{d11}:order:<orderId>) per order to expire

  ARGV[1] nowMs
  ARGV[2] how many items the keys name (m)
  ARGV[3..n] the m items' SKUs, then per order (in the order of its key) the index, 1..m, of its
             item

  Every order is read before anything is written: an order whose SKU is not its item's is a
  caller's bug, refused with nothing written.

  Returns
    {'EXPIRED', {itemIndex, units, reopened (0|1), orderId...}...}
        one entry per item that got units back: how many, whether it went from sold out to
        available (listed) in this batch, and the ids of the orders expired now
    {'WRONG_ITEM', orderId}  an order's key was given with another item's: nothing written
]]
--- @include "includes/giveBack"
--- @include "includes/endUnpaid"

local now, itemCount = tonumber(ARGV[1]), tonumber(ARGV[2])
local firstOrderKey = 3 + 2 * itemCount

-- Read every order first: the due pending ones, each with its item's index.
local due = {}
for k = firstOrderKey, #KEYS do
  local item = tonumber(ARGV[2 + itemCount + (k - firstOrderKey) + 1])
  local order = redis.call('HMGET', KEYS[k], 'id', 'userId', 'status', 'quantity', 'expiresAt', 'sku')
  if order[1] then
    if order[6] ~= ARGV[2 + item] then return {'WRONG_ITEM', order[1]} end
    if order[3] == 'pending_payment' and now >= tonumber(order[5]) then
      due[#due + 1] = {k, item, order}
    end
  end
end

local byItem = {}
local replies = {}
for _, entry in ipairs(due) do
  local k, item, order = entry[1], entry[2], entry[3]
  local quantity = tonumber(order[4])
  local reopened = endUnpaid(KEYS[k], KEYS[1 + 2 * item], KEYS[2 + 2 * item], KEYS[1], KEYS[2], order[1], order[2], quantity, 'expired', now)
  local reply = byItem[item]
  if not reply then
    reply = {item, 0, 0}
    byItem[item] = reply
    replies[#replies + 1] = reply
  end
  reply[2] = reply[2] + quantity
  if reopened == 1 then reply[3] = 1 end
  reply[#reply + 1] = order[1]
end
return {'EXPIRED', unpack(replies)}
