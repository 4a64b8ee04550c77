--[[
  ackOutbox: the persister's acknowledgement, once a batch is safely in Postgres: the entries leave the
  consumer group's pending list and the stream in one step, so Redis memory stays bounded and an
  entry is never deleted while still unacknowledged.

  KEYS[1] outbox stream fs:{d11}:outbox
  ARGV[1] consumer group name (e.g. relay)
  ARGV[2..n] stream entry ids

  Returns the number of entries deleted.
]]
-- Only an entry this call acknowledged (it was pending in the group) is deleted: an id the
-- group never delivered, or a wrong group name, deletes nothing.
local deleted = 0
for i = 2, #ARGV do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    deleted = deleted + redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
return deleted
