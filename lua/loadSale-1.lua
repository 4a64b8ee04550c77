--[[
  loadSale: writes a sale's anchor, the last step of loading a sale (layout 2). The anchor's
  existence means every stock shard of the sale is loaded (loadShard ran on each before), so a
  load cut short leaves no anchor and a retry finishes it.

  KEYS[1] anchor hash  fs:{d11}:sale
  ARGV[1] sale as JSON  {startsAt, endsAt (ms), paymentWindowMs}
  ARGV[2] the items' shard counts as JSON: [field, K, field, K, ...], field = shards:<encoded sku>

  Returns {'OK'} or {'SALE_EXISTS'} (nothing is written then: a close already recorded stays).
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return {'SALE_EXISTS'} end
local sale = cjson.decode(ARGV[1])
local shards = cjson.decode(ARGV[2])
if type(sale) ~= 'table' or type(shards) ~= 'table' then
  return redis.error_reply('loadSale: malformed sale ' .. ARGV[1])
end
redis.call('HSET', KEYS[1], 'startsAt', sale.startsAt, 'endsAt', sale.endsAt,
  'paymentWindowMs', sale.paymentWindowMs, 'closedAt', '', 'layout', '2', unpack(shards))
return {'OK'}
