--[[
  restockItem: adds stock to an item (it counts towards the low-stock percentage base) and
  relists it when the low-stock rule delisted it and stock is now above that level.
  An operator's own delist stays until the operator relists.

  KEYS[1] item hash fs:{d11}:item:phone-x
  ARGV[1] quantity to add (integer >= 1)

  Returns {'OK', availableAfter, relisted (0|1)} or {'ITEM_NOT_FOUND'}.
]]
--- @include "includes/lowStock"

if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
local quantity = tonumber(ARGV[1])
local available = redis.call('HINCRBY', KEYS[1], 'available', quantity)
local total = redis.call('HINCRBY', KEYS[1], 'total', quantity)
local fields = redis.call('HMGET', KEYS[1], 'delisted', 'lowUnits', 'lowPct')
local lowUnits, lowPct = tonumber(fields[2]), tonumber(fields[3])
local relisted = 0
if fields[1] == 'low_stock' and not atOrBelowLowStock(available, total, lowUnits, lowPct) then
  redis.call('HSET', KEYS[1], 'delisted', '')
  relisted = 1
end
return {'OK', available, relisted}
