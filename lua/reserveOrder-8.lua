--[[
  reserveOrder: decides one order attempt on the shopper's home stock shard atomically and, when
  it is accepted, records it. One round trip does every check and every write: sale window (the
  shard's copy), listed, stock, the user's live quantity against perUserLimit, idempotency,
  decrement, order record + outbox entry, and (K = 1) the automatic low-stock delist / sold-out
  marks. The shopper's attempt limit is counted here too, first, so it costs no round trip of its
  own and holds across every API process. Every key is in the shard's slot {s<T>}.

  KEYS[1] sale hash         fs:{s<T>}:d11:phone-x:0:sale   startsAt, endsAt, closedAt (ms), paymentWindowMs,
                                                           ordersAccepted (counter)
  KEYS[2] item hash         fs:{s<T>}:d11:phone-x:0:item   available, total, unitPrice, perUserLimit, shards,
                                                           lowUnits | lowPct, delisted, soldOutAt, delistedAt
  KEYS[3] live qty by user  fs:{s<T>}:d11:phone-x:0:users  hash userId -> live quantity
  KEYS[4] idempotency key   fs:{s<T>}:d11:phone-x:0:idem:u-42:abc  "orderId|sku|quantity" (unused when ARGV[7] = '')
  KEYS[5] order hash        fs:{s<T>}:order:<orderId>
  KEYS[6] outbox stream     fs:{s<T>}:d11:phone-x:0:outbox  the order's full state, read by the outbox persister
  KEYS[7] deadlines zset    fs:{s<T>}:d11:phone-x:0:deadlines  orderId scored by expiresAt (ms)
  KEYS[8] attempt counter   fs:{s<T>}:d11:phone-x:0:attempts:u-42:1700000000  this user's attempts on
                                                           this shard in nowMs's second (unused when ARGV[10] = 0)

  ARGV[1] saleId            ARGV[5] quantity (integer >= 1)
  ARGV[2] sku               ARGV[6] nowMs (ms since epoch)
  ARGV[3] orderId (minted with this shard's tag)           ARGV[7] idempotency key, '' for none
  ARGV[4] userId            ARGV[8] idempotency TTL (seconds)
  ARGV[9] how long the order record outlives its payment deadline (ms): a bound on memory even
          if the pipeline stalls; the worker shortens it once a final status is persisted
  ARGV[10] attempts a user may make on the shard per clock second (of nowMs); 0 = no limit
  ARGV[11] the shard's number k (recorded on the order)

  Returns
    {'OK', availableAfter, unitPrice, expiresAtMs, delistedNow (0|1), soldOutNow (0|1)}
    {'REPLAY', orderId}                     the key already made this very order, or the order id
                                            already names this user's order of this sku and quantity
                                            (the same command sent twice, e.g. resent by the client
                                            after a lost connection: it never takes stock twice)
    {'ORDER_ID_TAKEN'}                      the order id names another order (mint another id)
    {'NEED_STOCK', available, liveQuantity, perUserLimit}  K > 1 only: the shard holds fewer units than asked;
                                            nothing but the attempt counter is written (the caller
                                            looks at the item's total, moves stock, asks again)
    {'RATE_LIMITED'}                        over ARGV[10] attempts this second; nothing else is
                                            read or written (the attempt is still counted)
    {'SALE_NOT_FOUND'} {'ITEM_NOT_FOUND'} {'SALE_NOT_STARTED'} {'SALE_ENDED'} {'ITEM_DELISTED'}
    {'SOLD_OUT'} {'INSUFFICIENT_STOCK', available} {'PER_USER_LIMIT_EXCEEDED', liveQuantity}
    {'IDEMPOTENCY_KEY_REUSED'}              the key made an order with a different body
  Refusals are checked in this order (a closed sale is ended even before its start) and write
  nothing but the attempt counter. K > 1: a reused key is refused before NEED_STOCK (no stock is
  moved for an attempt that cannot be made), and the low-stock rule and sold-out belong to the
  item's total (src/orders/reservations.ts), so this script never sets them.
]]
--- @include "includes/lowStock"

local now = tonumber(ARGV[6])
local saleId, sku, orderId, userId = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local quantity, idempotencyKey = tonumber(ARGV[5]), ARGV[7]

-- The order id is minted per attempt: if its record exists, this very command already ran (a
-- resend), or, with odds of about 2^-42 per ms, another attempt drew the same id.
local existing = redis.call('HMGET', KEYS[5], 'userId', 'sku', 'quantity')
if existing[1] then
  if existing[1] == userId and existing[2] == sku and tonumber(existing[3]) == quantity then return {'REPLAY', orderId} end
  return {'ORDER_ID_TAKEN'}
end

-- Every attempt counts, whatever its outcome. The counter is named after its second; it lives
-- until a second after that second ends (PX is relative, so Redis's clock need not agree with
-- the caller's, and an attempt that was delayed on its way still finds it).
local attemptLimit = tonumber(ARGV[10])
if attemptLimit > 0 and not redis.call('SET', KEYS[8], 1, 'NX', 'PX', 2000 - now % 1000) then
  if redis.call('INCR', KEYS[8]) > attemptLimit then return {'RATE_LIMITED'} end
end

local sale = redis.call('HMGET', KEYS[1], 'startsAt', 'endsAt', 'closedAt', 'paymentWindowMs')
if not sale[1] then return {'SALE_NOT_FOUND'} end
local item = redis.call('HMGET', KEYS[2], 'available', 'total', 'unitPrice', 'perUserLimit', 'lowUnits', 'lowPct', 'delisted', 'shards')
if not item[1] then return {'ITEM_NOT_FOUND'} end

-- A replay wins over every later change (sold out, ended): the order was already made.
local fingerprint = sku .. '|' .. quantity
local keyReused = false
if idempotencyKey ~= '' then
  local prior = redis.call('GET', KEYS[4])
  if prior then
    local priorOrder, priorFingerprint = string.match(prior, '^([^|]*)|(.*)$')
    if priorFingerprint == fingerprint then return {'REPLAY', priorOrder} end
    keyReused = true
  end
end

-- A closed sale is over even before its start: closeSale promises SALE_ENDED to every attempt.
if sale[3] and sale[3] ~= '' then return {'SALE_ENDED'} end
if now < tonumber(sale[1]) then return {'SALE_NOT_STARTED'} end
if now >= tonumber(sale[2]) then return {'SALE_ENDED'} end
if item[7] and item[7] ~= '' then return {'ITEM_DELISTED'} end
local available = tonumber(item[1])
local live = tonumber(redis.call('HGET', KEYS[3], userId) or '0')
local sharded = tonumber(item[8] or '1') > 1
if sharded and available < quantity then
  if keyReused then return {'IDEMPOTENCY_KEY_REUSED'} end
  return {'NEED_STOCK', available, live, tonumber(item[4])}
end
if available <= 0 then return {'SOLD_OUT'} end
if available < quantity then return {'INSUFFICIENT_STOCK', available} end
if live + quantity > tonumber(item[4]) then return {'PER_USER_LIMIT_EXCEEDED', live} end
if keyReused then return {'IDEMPOTENCY_KEY_REUSED'} end

local total, unitPrice = tonumber(item[2]), tonumber(item[3])
local lowUnits, lowPct = tonumber(item[5]), tonumber(item[6])

local after = redis.call('HINCRBY', KEYS[2], 'available', -quantity)
redis.call('HINCRBY', KEYS[3], userId, quantity)
local expiresAt = now + tonumber(sale[4])
local amount = unitPrice * quantity
-- Redis formats every Lua number argument as text again; values that arrived as text (the
-- quantity, now, the stored price) are passed on as they came. Same text, ~1 µs less per order.
local quantityText, nowText, priceText = ARGV[5], ARGV[6], item[3]
redis.call('HSET', KEYS[5],
  'id', orderId, 'saleId', saleId, 'sku', sku, 'shard', ARGV[11], 'userId', userId, 'quantity', quantityText,
  'unitPrice', priceText, 'amount', amount, 'status', 'pending_payment',
  'createdAt', nowText, 'expiresAt', expiresAt, 'idempotencyKey', idempotencyKey)
redis.call('PEXPIREAT', KEYS[5], expiresAt + tonumber(ARGV[9]))
redis.call('ZADD', KEYS[7], expiresAt, orderId)
redis.call('HINCRBY', KEYS[1], 'ordersAccepted', 1)
redis.call('XADD', KEYS[6], '*', 'id', orderId, 'sku', sku, 'userId', userId, 'quantity', quantityText,
  'unitPrice', priceText, 'amount', amount, 'status', 'pending_payment', 'createdAt', nowText,
  'expiresAt', expiresAt, 'idempotencyKey', idempotencyKey)
if idempotencyKey ~= '' then
  redis.call('SET', KEYS[4], orderId .. '|' .. fingerprint, 'EX', ARGV[8])
end

-- K > 1: sold out and the low-stock level are facts about the item's total, not this shard's.
if sharded then return {'OK', after, unitPrice, expiresAt, 0, 0} end
local soldOutNow, delistedNow = 0, 0
if after == 0 then
  soldOutNow = 1
  redis.call('HSETNX', KEYS[2], 'soldOutAt', now)
end
-- The rule fires when stock falls to the level; an operator's relist below it is respected.
if atOrBelowLowStock(after, total, lowUnits, lowPct) and not atOrBelowLowStock(available, total, lowUnits, lowPct) then
  delistedNow = 1
  redis.call('HSET', KEYS[2], 'delisted', 'low_stock', 'delistedAt', now)
end
return {'OK', after, unitPrice, expiresAt, delistedNow, soldOutNow}
