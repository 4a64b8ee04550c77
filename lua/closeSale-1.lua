--[[
  closeSale: ends a sale now; every later attempt is refused with SALE_ENDED.

  KEYS[1] sale hash fs:{d11}:sale
  ARGV[1] nowMs

  Returns {'OK', closedAtMs} (the first close time when it was already closed) or {'SALE_NOT_FOUND'}.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'SALE_NOT_FOUND'} end
local closedAt = redis.call('HGET', KEYS[1], 'closedAt')
if closedAt and closedAt ~= '' then return {'OK', tonumber(closedAt)} end
redis.call('HSET', KEYS[1], 'closedAt', ARGV[1])
return {'OK', tonumber(ARGV[1])}
