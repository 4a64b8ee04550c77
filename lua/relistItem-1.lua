--[[
  relistItem: puts one stock shard of an item back on sale, whatever delisted it (the caller
  fans out to every shard). The low-stock rule fires again only when stock next falls to its level
  from above (after a restock). K > 1: shard 0 releases its held units (the low-stock level) into
  its available stock, so an operator's relist really puts the level's units on sale; a restock
  sets a level aside again.

  KEYS[1] the shard's item hash fs:{s<T>}:d11:phone-x:0:item
  ARGV[1] 'operator' (any delist is lifted; shard 0 of K > 1 releases held) or 'low_stock' (a
          restock of K > 1 lifting the rule's delist: only a low_stock delist is lifted, held stays)

  Returns {'OK', available} or {'ITEM_NOT_FOUND'}.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
if ARGV[1] == 'low_stock' then
  if redis.call('HGET', KEYS[1], 'delisted') == 'low_stock' then redis.call('HSET', KEYS[1], 'delisted', '') end
  return {'OK', tonumber(redis.call('HGET', KEYS[1], 'available'))}
end
redis.call('HSET', KEYS[1], 'delisted', '')
local held = tonumber(redis.call('HGET', KEYS[1], 'held') or '0')
if held > 0 then
  redis.call('HSET', KEYS[1], 'held', 0)
  return {'OK', redis.call('HINCRBY', KEYS[1], 'available', held)}
end
return {'OK', tonumber(redis.call('HGET', KEYS[1], 'available'))}
