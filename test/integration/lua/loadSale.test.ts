// loadSale.lua against real Redis: a sale and its items arrive in one step with their low-stock
// rules, items already at their level start delisted, and a second load changes nothing.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SaleCatalog } from '../../../src/sales/catalog.ts';
import type { SaleDefinition, SaleItemDefinition } from '../../../src/sales/sale.ts';
import { Reservations } from '../../../src/orders/reservations.ts';
import { loadSale as loadSaleScript, type LoadSaleArgs, type LoadSaleItem } from '../../../src/stock/scripts/load-sale.ts';
import { luaFixture, saleDefinition, saleItem } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;

const lua = luaFixture({ now: NOW, salePrefix: 'load' });
const { newSaleId, scanKeys, snapshot } = lua;

const item = (overrides: Partial<SaleItemDefinition> = {}) => saleItem({ perUserLimit: 2, ...overrides });

/** A sale that starts in a minute, with ten minutes to pay. */
const sale = (id: string, items: SaleItemDefinition[], overrides: Partial<SaleDefinition> = {}) =>
  saleDefinition(id, items, NOW, { startsAt: NOW + 60_000, paymentWindowSeconds: 600, ...overrides });

beforeAll(() => lua.open());
afterAll(() => lua.close());

describe('loadSale', () => {
  it('when a new sale is loaded, then the sale hash and one hash per item hold exactly its definition', async () => {
    const saleId = newSaleId('ok');
    const keys = lua.keys(saleId);
    const definition = sale(saleId, [
      item(),
      item({ sku: 'tv-y', name: 'TV Y', unitPrice: 9_900, stock: 50, perUserLimit: 1, lowStock: { units: 5 } }),
      item({ sku: 'pad-z', name: 'Pad Z', unitPrice: 1, stock: 40, perUserLimit: 3, lowStock: { percent: 12.5 } }),
    ]);

    expect(await lua.catalog.load(definition, NOW)).toBe(true);

    expect(await snapshot(saleId)).toEqual({
      [keys.sale]: { startsAt: String(NOW + 60_000), endsAt: String(NOW + 3_600_000), paymentWindowMs: '600000', closedAt: '' },
      [keys.item('phone-x')]: { sku: 'phone-x', available: '10', total: '10', unitPrice: '199900', perUserLimit: '2', delisted: '' },
      [keys.item('tv-y')]: { sku: 'tv-y', available: '50', total: '50', unitPrice: '9900', perUserLimit: '1', delisted: '', lowUnits: '5' },
      [keys.item('pad-z')]: { sku: 'pad-z', available: '40', total: '40', unitPrice: '1', perUserLimit: '3', delisted: '', lowPct: '12.5' },
    });
  });

  it('when the sale is already loaded, then SALE_EXISTS is returned and nothing changes, not even its items', async () => {
    const saleId = newSaleId('exists');
    expect(await lua.catalog.load(sale(saleId, [item()]), NOW)).toBe(true);
    // Sell one so the state differs from a fresh load.
    const reservations = new Reservations(lua.scripts);
    expect((await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW + 60_000)).kind).toBe('accepted');
    const before = await snapshot(saleId);

    const again = sale(saleId, [item({ stock: 999, unitPrice: 1 }), item({ sku: 'new-sku', name: 'New' })], { endsAt: NOW + 1 });
    expect(await lua.catalog.load(again, NOW + 120_000)).toBe(false);

    const keys = lua.keys(saleId);
    const reply = await loadSaleScript(lua.scripts, { saleId }, { sale: { startsAt: 0, endsAt: 1, paymentWindowMs: 1 }, items: [{ sku: 'phone-x', stock: 5, unitPrice: 1, perUserLimit: 1 }], now: NOW });
    expect(reply).toEqual({ code: 'SALE_EXISTS' });
    expect(await snapshot(saleId)).toEqual(before);
    expect(await lua.redis.exists(keys.item('new-sku'))).toBe(0);
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
      const stock = await lua.redis.hget(lua.keys(saleId).item('phone-x'), 'available');
      expect(stock).toBe(results[0] ? '10' : '20');
    } finally {
      await other.quit();
    }
  });

  it('when an item hash is left over from an earlier attempt, then loading replaces it rather than merging', async () => {
    const saleId = newSaleId('leftover');
    const keys = lua.keys(saleId);
    await lua.redis.hset(keys.item('phone-x'), 'available', '3', 'delisted', 'operator', 'lowUnits', '7', 'soldOutAt', '1');

    expect(await lua.catalog.load(sale(saleId, [item()]), NOW)).toBe(true);

    expect(await lua.redis.hgetall(keys.item('phone-x'))).toEqual({
      sku: 'phone-x',
      available: '10',
      total: '10',
      unitPrice: '199900',
      perUserLimit: '2',
      delisted: '',
    });
  });

  it('when an item is loaded at or below its low-stock level, then it starts delisted for low stock', async () => {
    const saleId = newSaleId('low-at-load');
    const keys = lua.keys(saleId);
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

    const state = async (sku: string) => lua.redis.hmget(keys.item(sku), 'delisted', 'delistedAt');
    expect(await state('at-units')).toEqual(['low_stock', String(NOW)]);
    expect(await state('below-units')).toEqual(['low_stock', String(NOW)]);
    expect(await state('above-units')).toEqual(['', null]);
    expect(await state('all-pct')).toEqual(['low_stock', String(NOW)]);
    expect(await state('most-pct')).toEqual(['', null]);
  });

  it('when an item is loaded with no stock, then it is marked sold out at load time (and delisted if it has a low-stock rule)', async () => {
    const saleId = newSaleId('empty');
    const keys = lua.keys(saleId);
    await lua.catalog.load(
      sale(saleId, [item({ sku: 'plain', stock: 0 }), item({ sku: 'ruled', stock: 0, lowStock: { percent: 10 } }), item({ sku: 'zero-units', stock: 3, lowStock: { units: 0 } })]),
      NOW,
    );

    expect(await lua.redis.hmget(keys.item('plain'), 'available', 'soldOutAt', 'delisted')).toEqual(['0', String(NOW), '']);
    expect(await lua.redis.hmget(keys.item('ruled'), 'available', 'soldOutAt', 'delisted')).toEqual(['0', String(NOW), 'low_stock']);
    // A level of 0 units is a rule too (Lua treats 0 as true): stored, and not yet reached.
    expect(await lua.redis.hmget(keys.item('zero-units'), 'lowUnits', 'soldOutAt', 'delisted')).toEqual(['0', null, '']);
  });

  it('when a sale has no items, then only the sale hash is written', async () => {
    const saleId = newSaleId('no-items');
    expect(await lua.catalog.load(sale(saleId, []), NOW)).toBe(true);
    expect(await scanKeys(`${lua.prefix}:{${saleId}}:*`)).toEqual([lua.keys(saleId).sale]);
  });

  it.each([
    { when: 'an item definition is malformed (stock null)', sale: { startsAt: 0, endsAt: 1, paymentWindowMs: 1 }, second: { sku: 'tv-y', stock: null, unitPrice: 1, perUserLimit: 1 } },
    { when: 'the sale definition is malformed (no endsAt)', sale: { startsAt: 0, paymentWindowMs: 1 }, second: { sku: 'tv-y', stock: 5, unitPrice: 1, perUserLimit: 1 } },
  ])('when $when, then the load fails and writes nothing', async ({ sale: saleJson, second }) => {
    const saleId = newSaleId('malformed');
    const good = { sku: 'phone-x', stock: 10, unitPrice: 1, perUserLimit: 1 };

    // Malformed on purpose: past the binding's types, as a buggy caller would send them.
    await expect(
      loadSaleScript(lua.scripts, { saleId }, { sale: saleJson as LoadSaleArgs['sale'], items: [good, second as unknown as LoadSaleItem], now: NOW }),
    ).rejects.toThrow();

    // A script error does not roll back what the script already wrote: the contract is "or nothing".
    expect(await scanKeys(`${lua.prefix}:{${saleId}}:*`)).toEqual([]);
  });
});
