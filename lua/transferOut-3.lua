--[[
  transferOut: the donor's half of an exactly-once stock transfer between two shards of one item.
  Debits up to `want` units from this shard's available into outPending and logs the debit under
  the transfer id X chosen by the driver, so a resend (ioredis after a lost reply, a retry, the
  recovery sweeper) never debits twice. The units stay counted in the item's total (outPending)
  until transferDone, after the target's transferIn credited them.

  KEYS[1] donor shard's item hash  fs:{s<T>}:<sale>:<sku>:<k>:item
  KEYS[2] donor's transfersOut hash (X -> to|qty|atMs|state, state sent or done)
  KEYS[3] donor's transfersSent zset (X -> atMs while sent)
  ARGV[1] transfer id X
  ARGV[2] target shard k (recorded for recovery)
  ARGV[3] want: the most units to move (integer >= 1)
  ARGV[4] min: move nothing unless at least this many are available (integer >= 1)
  ARGV[5] now, ms since the epoch

  Returns {'OK', qty, availableAfter} (debited now), {'ALREADY', qty} (X was debited before: its
  logged qty, whatever want says now), {'EMPTY', available} (available < min; nothing written) or
  {'ITEM_NOT_FOUND'}.
]]
local logged = redis.call('HGET', KEYS[2], ARGV[1])
if logged then
  local qty = string.match(logged, '^[^|]*|(%d+)|')
  return {'ALREADY', tonumber(qty)}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'ITEM_NOT_FOUND'} end
local want, min, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local available = tonumber(redis.call('HGET', KEYS[1], 'available') or '0')
if available < min or available <= 0 then return {'EMPTY', available} end
local qty = math.min(want, available)
local after = redis.call('HINCRBY', KEYS[1], 'available', -qty)
redis.call('HINCRBY', KEYS[1], 'outPending', qty)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. qty .. '|' .. now .. '|sent')
redis.call('ZADD', KEYS[3], now, ARGV[1])
return {'OK', qty, after}
