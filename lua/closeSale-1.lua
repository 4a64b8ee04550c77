--[[
  closeSale: ends a sale; every later attempt is refused with SALE_ENDED. Run first on the sale's
  anchor with now (the first close wins: its time C is the sale's closedAt), then on every shard's
  copy of the sale with C. Monotonic: a hash already closed keeps its time, so a retry is harmless.

  KEYS[1] sale hash: the anchor fs:{d11}:sale, or a shard's copy fs:{s<T>}:d11:phone-x:0:sale
  ARGV[1] closedAt (ms): now on the anchor, C on a shard

  Returns {'OK', closedAtMs} (the first close time when it was already closed) or {'SALE_NOT_FOUND'}.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'SALE_NOT_FOUND'} end
local closedAt = redis.call('HGET', KEYS[1], 'closedAt')
if closedAt and closedAt ~= '' then return {'OK', tonumber(closedAt)} end
redis.call('HSET', KEYS[1], 'closedAt', ARGV[1])
return {'OK', tonumber(ARGV[1])}
