--[[
  delistItem: an operator takes an item off sale; it stays off until relisted.

  KEYS[1] item hash fs:{d11}:item:phone-x
  ARGV[1] nowMs

  Returns {'OK'} or {'ITEM_NOT_FOUND'}. Delisting an item already delisted by the low-stock rule
  makes it the operator's (a restock will then not relist it).
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
if redis.call('HGET', KEYS[1], 'delisted') == '' then
  redis.call('HSET', KEYS[1], 'delistedAt', ARGV[1])
end
redis.call('HSET', KEYS[1], 'delisted', 'operator')
return {'OK'}
