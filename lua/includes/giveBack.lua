--[[
  giveBack: the one way an unpaid order's units come back (cancel or expiry): to the stock of the
  shard that sold them and off its user's live quantity there (the field is dropped at zero, so
  the hash stays small). Returns 1 when the shard reopened, i.e. it had no units and is listed, so
  API processes must forget their sold-out mark; else 0. Callers make sure it runs once per order.
]]
local function giveBack(itemKey, usersKey, userId, quantity)
  local available = redis.call('HINCRBY', itemKey, 'available', quantity)
  if redis.call('HINCRBY', usersKey, userId, -quantity) <= 0 then redis.call('HDEL', usersKey, userId) end
  if available == quantity and redis.call('HGET', itemKey, 'delisted') == '' then return 1 end
  return 0
end
