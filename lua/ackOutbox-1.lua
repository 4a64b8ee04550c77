--[[
  ackOutbox: the persister's acknowledgement, once a batch is safely in Postgres: the entries leave
  the consumer group's pending list and the stream in one step, so Redis memory stays bounded and
  an entry is never deleted while still unacknowledged.

  KEYS[1] outbox stream (a stock shard's), e.g. fs:{s1a2b3c4d}:d11:phone:0:outbox
  ARGV[1] consumer group name (the outbox's one group)
  ARGV[2..n] stream entry ids (at most a few thousand: they are passed to XACK at once)

  Returns the number of entries deleted.
]]
-- Only an entry this call acknowledged (it was pending in the group) is deleted: an id the
-- group never delivered, or a wrong group name, deletes nothing.
--
-- Cost: XDEL finds each entry by scanning its stream node (up to 100 entries of ~15 fields), the
-- dearest step of the whole pipeline in Redis when done per entry. So the batch is acknowledged
-- with one XACK and, in the usual case, removed with one XTRIM MINID that drops whole nodes: every
-- entry below the oldest one the group still owes (the first pending, else the last delivered)
-- has been delivered and acknowledged — and, acknowledged entries being deleted as they are
-- acknowledged, is one of this batch. Only the batch's entries above that point (a batch finished
-- before an older one) are deleted one by one.
--
-- The invariant the XTRIM MINID relies on: the stream has exactly one consumer group (ARGV[1]),
-- and nothing but this script ever XACKs in it. Then an entry below the group's oldest pending id
-- (or, with nothing pending, at or below its last-delivered id) was acknowledged here, that is,
-- persisted. A second group, or an XACK from elsewhere, would let the trim delete entries that
-- group or caller still owes. (The persister destroys the previous version's group for this.)
if #ARGV < 2 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local group = ARGV[1]
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end

local lastDelivered
for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  if fields['name'] == group then lastDelivered = fields['last-delivered-id'] end
end
if lastDelivered == nil then return 0 end

local acked = redis.call('XACK', KEYS[1], group, unpack(ids))
if acked == 0 then return 0 end

local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am == nil or bm == nil then return false end
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end

if acked == #ids then
  -- Every id was pending and is acknowledged now.
  local oldestOwed = lastDelivered
  local pending = redis.call('XPENDING', KEYS[1], group, '-', '+', 1)
  if pending[1] ~= nil then oldestOwed = pending[1][1] end
  local deleted = redis.call('XTRIM', KEYS[1], 'MINID', oldestOwed)
  local above = {}
  for _, id in ipairs(ids) do
    if not before(id, oldestOwed) then above[#above + 1] = id end
  end
  if #above > 0 then deleted = deleted + redis.call('XDEL', KEYS[1], unpack(above)) end
  return deleted
end

-- Some ids were not pending (unknown, repeated, already acknowledged, never delivered): those this
-- call acknowledged are the ones still in the stream, delivered, and no longer pending.
local deleted = 0
local seen = {}
for _, id in ipairs(ids) do
  if not seen[id] and not before(lastDelivered, id) then
    seen[id] = true
    local present = redis.call('XRANGE', KEYS[1], id, id)
    if present[1] ~= nil and redis.call('XPENDING', KEYS[1], group, id, id, 1)[1] == nil then
      deleted = deleted + redis.call('XDEL', KEYS[1], id)
    end
  end
end
return deleted
