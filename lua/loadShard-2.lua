--[[
  loadShard: loads one stock shard of an item (layout 2): the shard's copy of the sale's window
  and the shard's stock, in one step. Run on every shard before the sale's anchor (loadSale).

  KEYS[1] the shard's sale hash  fs:{s<T>}:d11:phone-x:0:sale
  KEYS[2] the shard's item hash  fs:{s<T>}:d11:phone-x:0:item

  ARGV[1] sale as JSON  {startsAt, endsAt (ms), paymentWindowMs}
  ARGV[2] nowMs
  ARGV[3] the shard as JSON {sku, shard, shards, available, unitPrice, perUserLimit, delisted
          ('' | 'low_stock'), soldOut (bool); shard 0 also total, lowUnits?, lowPct?, held? (K > 1)}
          The split and the initial low-stock state are decided by the caller (src/sales/stock-split.ts).

  Returns {'OK'}, or {'EXISTS'} when the shard was already loaded (a retried load): it is left as
  it is, since it may already have taken orders only if the anchor exists, which the caller checked.
]]
if redis.call('EXISTS', KEYS[2]) == 1 then return {'EXISTS'} end
local function isNumber(value) return type(value) == 'number' end
local sale = cjson.decode(ARGV[1])
local item = cjson.decode(ARGV[3])
if type(sale) ~= 'table' or not (isNumber(sale.startsAt) and isNumber(sale.endsAt) and isNumber(sale.paymentWindowMs)) then
  return redis.error_reply('loadShard: malformed sale ' .. ARGV[1])
end
if type(item) ~= 'table' or type(item.sku) ~= 'string' or not isNumber(item.shard) or not isNumber(item.shards)
  or not isNumber(item.available) or not isNumber(item.unitPrice) or not isNumber(item.perUserLimit) then
  return redis.error_reply('loadShard: malformed item ' .. ARGV[3])
end
local now = ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'startsAt', sale.startsAt, 'endsAt', sale.endsAt,
    'paymentWindowMs', sale.paymentWindowMs, 'closedAt', '')
end
redis.call('HSET', KEYS[2], 'sku', item.sku, 'shard', item.shard, 'shards', item.shards,
  'available', item.available, 'unitPrice', item.unitPrice, 'perUserLimit', item.perUserLimit,
  'delisted', item.delisted or '')
if isNumber(item.total) then redis.call('HSET', KEYS[2], 'total', item.total) end
-- One level per item; lowUnits wins if both came, as in atOrBelowLowStock.
if isNumber(item.lowUnits) then
  redis.call('HSET', KEYS[2], 'lowUnits', item.lowUnits)
elseif isNumber(item.lowPct) then
  redis.call('HSET', KEYS[2], 'lowPct', item.lowPct)
end
if isNumber(item.held) then redis.call('HSET', KEYS[2], 'held', item.held) end
if item.delisted and item.delisted ~= '' then redis.call('HSET', KEYS[2], 'delistedAt', now) end
if item.soldOut then redis.call('HSET', KEYS[2], 'soldOutAt', now) end
return {'OK'}
