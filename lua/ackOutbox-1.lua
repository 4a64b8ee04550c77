--[[
  ackOutbox: the relay's acknowledgement, once a batch is safely in BullMQ: the entries leave the
  consumer group's pending list and the stream in one step, so Redis memory stays bounded and an
  entry is never deleted while still unacknowledged.

  KEYS[1] outbox stream fs:{d11}:outbox
  ARGV[1] consumer group name (e.g. relay)
  ARGV[2..n] stream entry ids

  Returns the number of entries deleted.
]]
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
