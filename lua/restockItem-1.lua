--[[
  restockItem: adds stock to an item, on its shard 0 (it counts towards the low-stock percentage
  base). K = 1: relists the item when the low-stock rule delisted it and stock is now above that
  level. K > 1: first tops the held units up to the level (floor(lowPct * total / 100), or lowUnits),
  the rest goes on sale; relisting is the caller's (it reads every shard). An operator's own delist
  stays until the operator relists.

  KEYS[1] shard 0's item hash fs:{s<T>}:d11:phone-x:0:item
  ARGV[1] quantity to add (integer >= 1)

  Returns {'OK', availableAfter, relisted (0|1), held} or {'ITEM_NOT_FOUND'}.
]]
--- @include "includes/lowStock"

if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
local quantity = tonumber(ARGV[1])
local total = redis.call('HINCRBY', KEYS[1], 'total', quantity)
local fields = redis.call('HMGET', KEYS[1], 'delisted', 'lowUnits', 'lowPct', 'shards', 'held')
local lowUnits, lowPct = tonumber(fields[2]), tonumber(fields[3])
if tonumber(fields[4] or '1') > 1 then
  local held = tonumber(fields[5] or '0')
  local level = 0
  if lowUnits then level = lowUnits elseif lowPct then level = math.floor(lowPct * total / 100) end
  local topUp = math.max(0, math.min(quantity, level - held))
  if topUp > 0 then held = redis.call('HINCRBY', KEYS[1], 'held', topUp) end
  local available = redis.call('HINCRBY', KEYS[1], 'available', quantity - topUp)
  return {'OK', available, 0, held}
end
local available = redis.call('HINCRBY', KEYS[1], 'available', quantity)
local relisted = 0
if fields[1] == 'low_stock' and not atOrBelowLowStock(available, total, lowUnits, lowPct) then
  redis.call('HSET', KEYS[1], 'delisted', '')
  relisted = 1
end
return {'OK', available, relisted, 0}
