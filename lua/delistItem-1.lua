--[[
  delistItem: takes one stock shard of an item off sale (the caller fans out to every shard).

  KEYS[1] the shard's item hash fs:{s<T>}:d11:phone-x:0:item
  ARGV[1] nowMs
  ARGV[2] reason: 'operator' (stays off until an operator relists; delisting an item the
          low-stock rule delisted makes it the operator's, so a restock will not relist it) or
          'low_stock' (the K > 1 rule on the item's total: only a shard still listed is marked)

  Returns {'OK'} or {'ITEM_NOT_FOUND'}.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
local listed = redis.call('HGET', KEYS[1], 'delisted') == ''
if listed then redis.call('HSET', KEYS[1], 'delistedAt', ARGV[1]) end
if ARGV[2] == 'operator' or listed then redis.call('HSET', KEYS[1], 'delisted', ARGV[2]) end
return {'OK'}
