--[[
  transferDone: closes transfer X on the donor once the target credited it: the units leave
  outPending (they now count in the target's available) and X leaves transfersSent, so recovery
  no longer visits it. Idempotent: a transfer already done, or never debited here, is left alone.

  KEYS[1] donor shard's item hash  fs:{s<T>}:<sale>:<sku>:<k>:item
  KEYS[2] donor's transfersOut hash (X -> to|qty|atMs|state)
  KEYS[3] donor's transfersSent zset
  ARGV[1] transfer id X

  Returns {'OK', qty} (closed now), {'ALREADY', qty} (closed before) or {'UNKNOWN'} (no debit
  under X here; nothing written).
]]
local logged = redis.call('HGET', KEYS[2], ARGV[1])
if not logged then return {'UNKNOWN'} end
local to, qty, at, state = string.match(logged, '^([^|]*)|(%d+)|(%d+)|(%a+)$')
qty = tonumber(qty)
if state ~= 'sent' then return {'ALREADY', qty} end
redis.call('HINCRBY', KEYS[1], 'outPending', -qty)
redis.call('HSET', KEYS[2], ARGV[1], to .. '|' .. qty .. '|' .. at .. '|done')
redis.call('ZREM', KEYS[3], ARGV[1])
return {'OK', qty}
