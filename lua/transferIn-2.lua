--[[
  transferIn: the target's half of an exactly-once stock transfer. Credits the units of transfer
  X once: X is remembered in transfersIn for the sale's life, so a resend or the recovery
  sweeper's credit of the same X changes nothing. Clears soldOutAt (the shard sells again).

  KEYS[1] target shard's item hash  fs:{s<T>}:<sale>:<sku>:<k>:item
  KEYS[2] target's transfersIn hash (X -> qty)
  ARGV[1] transfer id X
  ARGV[2] qty: the units the donor's transferOut debited under X (integer >= 1)

  Returns {'OK', availableAfter, reopened (1 when the shard had nothing available and the item is
  listed)}, {'ALREADY', qty} (X was credited before) or {'ITEM_NOT_FOUND'}.
]]
local credited = redis.call('HGET', KEYS[2], ARGV[1])
if credited then return {'ALREADY', tonumber(credited)} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
local qty = tonumber(ARGV[2])
local fields = redis.call('HMGET', KEYS[1], 'available', 'delisted')
local before = tonumber(fields[1] or '0')
local after = redis.call('HINCRBY', KEYS[1], 'available', qty)
redis.call('HSET', KEYS[2], ARGV[1], qty)
redis.call('HDEL', KEYS[1], 'soldOutAt')
local reopened = 0
if before <= 0 and after > 0 and (fields[2] == false or fields[2] == '') then reopened = 1 end
return {'OK', after, reopened}
