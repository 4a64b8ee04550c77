--[[
  relistItem: an operator puts an item back on sale, whatever delisted it. The low-stock rule
  fires again only when stock next falls to its level from above (after a restock).

  KEYS[1] item hash fs:{d11}:item:phone-x

  Returns {'OK', available} or {'ITEM_NOT_FOUND'}.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
redis.call('HSET', KEYS[1], 'delisted', '')
return {'OK', tonumber(redis.call('HGET', KEYS[1], 'available'))}
