--[[
  loadSale: loads a new sale and all its items into Redis in one atomic step, or nothing.
  The one script with a variable key count: one key for the sale, then one per item.

  KEYS[1]    sale hash   fs:{d11}:sale
  KEYS[2..n] item hashes fs:{d11}:item:<sku>, in the order of ARGV[3..n]

  ARGV[1] sale as JSON  {startsAt, endsAt (ms), paymentWindowMs}
  ARGV[2] nowMs
  ARGV[3..n] one item per key, as JSON {sku, stock, unitPrice, perUserLimit, lowUnits?, lowPct?}

  Returns {'OK'} or {'SALE_EXISTS'} (nothing is written then).
  An item whose stock already sits at or below its low-stock level starts delisted.
]]
--- @include "includes/lowStock"

if redis.call('EXISTS', KEYS[1]) == 1 then return {'SALE_EXISTS'} end
-- Everything is decoded and checked before the first write: Redis does not undo the writes of
-- a script that fails half-way.
local function isNumber(value) return type(value) == 'number' end
local sale = cjson.decode(ARGV[1])
if type(sale) ~= 'table' or not (isNumber(sale.startsAt) and isNumber(sale.endsAt) and isNumber(sale.paymentWindowMs)) then
  return redis.error_reply('loadSale: malformed sale ' .. ARGV[1])
end
local now = tonumber(ARGV[2])
local items = {}
for i = 2, #KEYS do
  local item = cjson.decode(ARGV[i + 1] or 'null')
  if type(item) ~= 'table' or type(item.sku) ~= 'string' or not isNumber(item.stock)
    or not isNumber(item.unitPrice) or not isNumber(item.perUserLimit)
    or (item.lowUnits ~= nil and not isNumber(item.lowUnits))
    or (item.lowPct ~= nil and not isNumber(item.lowPct)) then
    return redis.error_reply('loadSale: malformed item ' .. tostring(ARGV[i + 1]))
  end
  items[i] = item
end
for i = 2, #KEYS do
  local item = items[i]
  redis.call('DEL', KEYS[i])
  redis.call('HSET', KEYS[i], 'sku', item.sku, 'available', item.stock, 'total', item.stock,
    'unitPrice', item.unitPrice, 'perUserLimit', item.perUserLimit, 'delisted', '')
  -- One level per item; lowUnits wins if both came, as in atOrBelowLowStock.
  if item.lowUnits then
    redis.call('HSET', KEYS[i], 'lowUnits', item.lowUnits)
  elseif item.lowPct then
    redis.call('HSET', KEYS[i], 'lowPct', item.lowPct)
  end
  if atOrBelowLowStock(item.stock, item.stock, item.lowUnits, item.lowPct) then redis.call('HSET', KEYS[i], 'delisted', 'low_stock', 'delistedAt', now) end
  if item.stock == 0 then redis.call('HSET', KEYS[i], 'soldOutAt', now) end
end
redis.call('HSET', KEYS[1], 'startsAt', sale.startsAt, 'endsAt', sale.endsAt,
  'paymentWindowMs', sale.paymentWindowMs, 'closedAt', '')
return {'OK'}
