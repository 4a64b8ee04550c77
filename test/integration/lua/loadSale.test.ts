// loadShard-2.lua and loadSale-1.lua against real Redis (key layout 2): each stock shard gets the
// sale's window and its share of the stock with the low-stock rule, the anchor is written last
// (its existence means every shard is loaded), a load cut short is finished by loading again,
// and a second load changes nothing.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SaleCatalog } from '../../../src/sales/catalog.ts';
import type { SaleDefinition, SaleItemDefinition } from '../../../src/sales/sale.ts';
import { Reservations } from '../../../src/orders/reservations.ts';
import { anchorKey, shardKeys } from '../../../src/stock/keys.ts';
import { loadSale as loadAnchor, loadShard } from '../../../src/stock/scripts/load-sale.ts';
import { shardStocks } from '../../../src/sales/stock-split.ts';
import { luaFixture, saleDefinition, saleItem } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;

const lua = luaFixture({ now: NOW, salePrefix: 'load' });
const { newSaleId, snapshot } = lua;

const item = (overrides: Partial<SaleItemDefinition> = {}) => saleItem({ perUserLimit: 2, ...overrides });

/** A sale that starts in a minute, with ten minutes to pay. */
const sale = (id: string, items: SaleItemDefinition[], overrides: Partial<SaleDefinition> = {}) =>
  saleDefinition(id, items, NOW, { startsAt: NOW + 60_000, paymentWindowSeconds: 600, ...overrides });

const WINDOW = { startsAt: String(NOW + 60_000), endsAt: String(NOW + 3_600_000), paymentWindowMs: '600000', closedAt: '' };

beforeAll(() => lua.open());
afterAll(() => lua.close());

describe('loading a sale (K = 1)', () => {
  it('when a new sale is loaded, then its anchor and, per item, shard 0\'s copy of the window and its item hash hold exactly its definition', async () => {
    const saleId = newSaleId('ok');
    const keys = (sku: string) => shardKeys(lua.prefix, saleId, sku, 0);
    const definition = sale(saleId, [
      item(),
      item({ sku: 'tv-y', name: 'TV Y', unitPrice: 9_900, stock: 50, perUserLimit: 1, lowStock: { units: 5 } }),
      item({ sku: 'pad-z', name: 'Pad Z', unitPrice: 1, stock: 40, perUserLimit: 3, lowStock: { percent: 12.5 } }),
    ]);

    expect(await lua.catalog.load(definition, NOW)).toBe(true);

    const shard = { shard: '0', shards: '1', delisted: '' };
    expect(await snapshot(saleId)).toEqual({
      [anchorKey(lua.prefix, saleId)]: { ...WINDOW, layout: '2', 'shards:phone-x': '1', 'shards:tv-y': '1', 'shards:pad-z': '1' },
      [keys('phone-x').sale]: WINDOW,
      [keys('tv-y').sale]: WINDOW,
      [keys('pad-z').sale]: WINDOW,
      [keys('phone-x').item]: { sku: 'phone-x', ...shard, available: '10', total: '10', unitPrice: '199900', perUserLimit: '2' },
      [keys('tv-y').item]: { sku: 'tv-y', ...shard, available: '50', total: '50', unitPrice: '9900', perUserLimit: '1', lowUnits: '5' },
      [keys('pad-z').item]: { sku: 'pad-z', ...shard, available: '40', total: '40', unitPrice: '1', perUserLimit: '3', lowPct: '12.5' },
    });
  });

  it('when the sale is already loaded, then the load answers false and nothing changes, not even its items', async () => {
    const saleId = newSaleId('exists');
    expect(await lua.catalog.load(sale(saleId, [item()]), NOW)).toBe(true);
    // Sell one so the state differs from a fresh load.
    const reservations = new Reservations(lua.scripts);
    expect((await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW + 60_000)).kind).toBe('accepted');
    const before = await snapshot(saleId);

    const again = sale(saleId, [item({ stock: 999, unitPrice: 1 }), item({ sku: 'new-sku', name: 'New' })], { endsAt: NOW + 1 });
    expect(await lua.catalog.load(again, NOW + 120_000)).toBe(false);

    const reply = await loadAnchor(lua.scripts, saleId, { sale: { startsAt: 0, endsAt: 1, paymentWindowMs: 1 }, items: [{ sku: 'phone-x', shards: 3 }] });
    expect(reply).toEqual({ code: 'SALE_EXISTS' });
    expect(await snapshot(saleId)).toEqual(before);
    expect(await lua.redis.exists(shardKeys(lua.prefix, saleId, 'new-sku', 0).item)).toBe(0);
  });

  it('when the same sale is loaded by two callers at once, then exactly one load wins', async () => {
    const saleId = newSaleId('race');
    const other = new Redis(lua.ctx.redisUrl);
    try {
      const otherCatalog = new SaleCatalog(lua.scriptsFor(other));
      const results = await Promise.all([
        lua.catalog.load(sale(saleId, [item({ stock: 10 })]), NOW),
        otherCatalog.load(sale(saleId, [item({ stock: 20 })]), NOW),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(['10', '20']).toContain(await lua.redis.hget(shardKeys(lua.prefix, saleId, 'phone-x', 0).item, 'available'));
    } finally {
      await other.quit();
    }
  });

  it('when a load was cut short after some shards (no anchor), then the sale is not found, and loading again finishes it without resetting the loaded shards', async () => {
    const saleId = newSaleId('half');
    const definition = sale(saleId, [item(), item({ sku: 'tv-y', name: 'TV Y', stock: 7 })], { startsAt: NOW - 60_000 });
    const window = { startsAt: definition.startsAt, endsAt: definition.endsAt, paymentWindowMs: 600_000 };
    const [phone] = shardStocks(item());
    if (!phone) throw new Error('no shard');
    // The first item's shard is in, with a different count than a fresh load would write.
    expect(await loadShard(lua.scripts, { saleId, sku: 'phone-x', shard: 0, shards: 1 }, { sale: window, stock: { ...phone, available: 3 }, now: NOW })).toEqual({ code: 'OK' });

    expect(await new Reservations(lua.scripts).reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).toEqual({ kind: 'refused', code: 'SALE_NOT_FOUND', fromMemory: false });

    expect(await lua.catalog.load(definition, NOW)).toBe(true);
    expect(await lua.redis.hget(shardKeys(lua.prefix, saleId, 'phone-x', 0).item, 'available')).toBe('3');
    expect(await lua.redis.hget(shardKeys(lua.prefix, saleId, 'tv-y', 0).item, 'available')).toBe('7');
    expect(await lua.redis.hgetall(anchorKey(lua.prefix, saleId))).toMatchObject({ layout: '2', 'shards:phone-x': '1', 'shards:tv-y': '1' });
    expect((await new Reservations(lua.scripts).reserve({ saleId, sku: 'tv-y', userId: 'u-1', quantity: 1 }, NOW)).kind).toBe('accepted');
  });

  it('when an item is loaded at or below its low-stock level, then it starts delisted for low stock', async () => {
    const saleId = newSaleId('low-at-load');
    await lua.catalog.load(
      sale(saleId, [
        item({ sku: 'at-units', stock: 5, lowStock: { units: 5 } }),
        item({ sku: 'below-units', stock: 4, lowStock: { units: 5 } }),
        item({ sku: 'above-units', stock: 6, lowStock: { units: 5 } }),
        item({ sku: 'all-pct', stock: 10, lowStock: { percent: 100 } }),
        item({ sku: 'most-pct', stock: 10, lowStock: { percent: 99.99 } }),
      ]),
      NOW,
    );

    const state = async (sku: string) => lua.redis.hmget(shardKeys(lua.prefix, saleId, sku, 0).item, 'delisted', 'delistedAt');
    expect(await state('at-units')).toEqual(['low_stock', String(NOW)]);
    expect(await state('below-units')).toEqual(['low_stock', String(NOW)]);
    expect(await state('above-units')).toEqual(['', null]);
    expect(await state('all-pct')).toEqual(['low_stock', String(NOW)]);
    expect(await state('most-pct')).toEqual(['', null]);
  });

  it('when an item is loaded with no stock, then it is marked sold out at load time (and delisted if it has a low-stock rule)', async () => {
    const saleId = newSaleId('empty');
    await lua.catalog.load(
      sale(saleId, [item({ sku: 'plain', stock: 0 }), item({ sku: 'ruled', stock: 0, lowStock: { percent: 10 } }), item({ sku: 'zero-units', stock: 3, lowStock: { units: 0 } })]),
      NOW,
    );
    const fields = (sku: string, ...names: string[]) => lua.redis.hmget(shardKeys(lua.prefix, saleId, sku, 0).item, ...names);

    expect(await fields('plain', 'available', 'soldOutAt', 'delisted')).toEqual(['0', String(NOW), '']);
    expect(await fields('ruled', 'available', 'soldOutAt', 'delisted')).toEqual(['0', String(NOW), 'low_stock']);
    // A level of 0 units is a rule too (Lua treats 0 as true): stored, and not yet reached.
    expect(await fields('zero-units', 'lowUnits', 'soldOutAt', 'delisted')).toEqual(['0', null, '']);
  });

  it('when a sale has no items, then only the anchor is written', async () => {
    const saleId = newSaleId('no-items');
    expect(await lua.catalog.load(sale(saleId, []), NOW)).toBe(true);
    expect(Object.keys(await snapshot(saleId))).toEqual([anchorKey(lua.prefix, saleId)]);
  });

});

describe('loading a sale (K > 1)', () => {
  it('when an item has 4 shards and a low-stock level of 5 units, then shard 0 holds the level and the 40 units above it are spread 10 per shard', async () => {
    const saleId = newSaleId('k4');
    await lua.catalog.load(sale(saleId, [item({ stock: 45, lowStock: { units: 5 }, stockShards: 4 })]), NOW);
    const hashes = await Promise.all([0, 1, 2, 3].map((k) => lua.redis.hgetall(shardKeys(lua.prefix, saleId, 'phone-x', k).item)));

    expect(hashes.map((hash) => hash.available)).toEqual(['10', '10', '10', '10']);
    expect(hashes.map((hash) => hash.shards)).toEqual(['4', '4', '4', '4']);
    expect(hashes[0]).toMatchObject({ shard: '0', total: '45', held: '5', lowUnits: '5', delisted: '' });
    expect(hashes[1]?.held).toBeUndefined();
    expect(hashes[1]?.total).toBeUndefined();
    expect(await lua.redis.hget(anchorKey(lua.prefix, saleId), 'shards:phone-x')).toBe('4');
    // Every shard has the window, each in its own slot.
    for (let k = 0; k < 4; k++) expect(await lua.redis.hgetall(shardKeys(lua.prefix, saleId, 'phone-x', k).sale)).toEqual(WINDOW);
  });

  it.each([
    { stock: 10, shards: 3, lowStock: undefined, held: 0, split: [4, 3, 3], delisted: '' },
    { stock: 2, shards: 4, lowStock: undefined, held: 0, split: [1, 1, 0, 0], delisted: '' },
    { stock: 100, shards: 4, lowStock: { percent: 12.5 }, held: 12, split: [22, 22, 22, 22], delisted: '' },
    { stock: 4, shards: 2, lowStock: { units: 5 }, held: 4, split: [0, 0], delisted: 'low_stock' },
  ])('when $stock units go over $shards shards with rule $lowStock, then $held are held and the rest splits as $split', async ({ stock, shards, lowStock, held, split, delisted }) => {
    const stocks = shardStocks(item({ stock, stockShards: shards, lowStock }));
    expect(stocks.map((s) => s.available)).toEqual(split);
    expect(stocks[0]?.held).toBe(held);
    expect(held + split.reduce((a, b) => a + b, 0)).toBe(stock);
    expect(new Set(stocks.map((s) => s.delisted))).toEqual(new Set([delisted]));
  });
});
