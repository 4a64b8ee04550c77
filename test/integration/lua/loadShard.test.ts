// loadShard-2.lua against real Redis: one stock shard's copy of the window and its stock arrive
// in one step (OK); a shard already loaded is left exactly as it is (EXISTS), so a load cut
// short can be run again; a malformed definition writes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardStocks } from '../../../src/sales/stock-split.ts';
import { shardKeys } from '../../../src/stock/keys.ts';
import { loadShard, type ShardStock } from '../../../src/stock/scripts/load-sale.ts';
import { luaFixture, saleItem } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const WINDOW = { startsAt: NOW - 60_000, endsAt: NOW + 3_600_000, paymentWindowMs: 900_000 };

const lua = luaFixture({ now: NOW, salePrefix: 'shard' });
const { newSaleId, snapshot } = lua;

beforeAll(() => lua.open());
afterAll(() => lua.close());

/** Shard `k` of a phone-x with `stock` units over `shards` shards, as the catalog would load it. */
function stockOf(stock: number, shards: number, k: number): ShardStock {
  const found = shardStocks(saleItem({ stock, stockShards: shards }))[k];
  if (!found) throw new Error(`no shard ${k}`);
  return found;
}

describe('loadShard', () => {
  it('when a shard is loaded, then its window copy and item hash hold its share (OK)', async () => {
    const saleId = newSaleId('ok');
    const ref = { saleId, sku: 'phone-x', shard: 1, shards: 3 };
    expect(await loadShard(lua.scripts, ref, { sale: WINDOW, stock: stockOf(10, 3, 1), now: NOW })).toEqual({ code: 'OK' });

    const keys = shardKeys(lua.prefix, saleId, 'phone-x', 1);
    expect(await lua.redis.hgetall(keys.sale)).toEqual({ startsAt: String(WINDOW.startsAt), endsAt: String(WINDOW.endsAt), paymentWindowMs: '900000', closedAt: '' });
    expect(await lua.redis.hgetall(keys.item)).toEqual({ sku: 'phone-x', shard: '1', shards: '3', available: '3', unitPrice: '199900', perUserLimit: '5', delisted: '' });
  });

  it('when the shard is already loaded (a retried load), then EXISTS is answered and the shard is left as it is', async () => {
    const saleId = newSaleId('exists');
    const ref = { saleId, sku: 'phone-x', shard: 0, shards: 1 };
    await loadShard(lua.scripts, ref, { sale: WINDOW, stock: stockOf(10, 1, 0), now: NOW });
    await lua.redis.hset(shardKeys(lua.prefix, saleId, 'phone-x', 0).item, 'available', '4');
    const before = await snapshot(saleId);

    expect(await loadShard(lua.scripts, ref, { sale: { ...WINDOW, endsAt: NOW }, stock: stockOf(99, 1, 0), now: NOW + 1 })).toEqual({ code: 'EXISTS' });
    expect(await snapshot(saleId)).toEqual(before);
  });

  it('when the item definition is malformed, then the script fails and writes nothing', async () => {
    const saleId = newSaleId('malformed');
    const bad = { ...stockOf(10, 1, 0), available: null } as unknown as ShardStock;
    await expect(loadShard(lua.scripts, { saleId, sku: 'phone-x', shard: 0, shards: 1 }, { sale: WINDOW, stock: bad, now: NOW })).rejects.toThrow();
    expect(await snapshot(saleId)).toEqual({});
  });
});
