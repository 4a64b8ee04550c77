--[[
  endUnpaid: ends a pending order unpaid (status 'cancelled' or 'expired', with its time), gives
  its units back (giveBack), takes it off the deadlines and appends its new state to the outbox:
  the one way every script (cancel, late payment, the sweeper's expiry) ends an order unpaid, so
  they cannot disagree. Returns giveBack's reopened flag. Callers check first that the order is
  pending, so it runs once per order, and include giveBack before it.
]]

local function endUnpaid(orderKey, itemKey, usersKey, outboxKey, deadlinesKey, orderId, userId, quantity, status, now)
  local reopened = giveBack(itemKey, usersKey, userId, quantity)
  if status == 'expired' then
    redis.call('HSET', orderKey, 'status', 'expired', 'expiredAt', now)
  else
    redis.call('HSET', orderKey, 'status', 'cancelled', 'cancelledAt', now)
  end
  redis.call('ZREM', deadlinesKey, orderId)
  redis.call('XADD', outboxKey, '*', unpack(redis.call('HGETALL', orderKey)))
  return reopened
end
