// restockItem-1.lua against real Redis: stock and the percentage base grow together, a
// low-stock delist is lifted only once stock is above the level, an operator's delist is not,
// and restocks racing a rush keep available = total − sold.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restockItem } from '../../../src/stock/scripts/restock-item.ts';
import { acceptedOf, luaFixture, saleItem as item, shoppers as users } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;

const lua = luaFixture({ now: NOW, salePrefix: 'restock', connections: 8 });
const { newSaleId, loadSale, fresh, rush } = lua;
const stock = (saleId: string) => lua.itemFields(saleId, 'phone-x', 'available', 'total', 'delisted');

beforeAll(() => lua.open());
afterAll(() => lua.close());

describe('restockItem', () => {
  it('when a listed item is restocked, then available and total grow by the quantity and nothing is relisted', async () => {
    const saleId = newSaleId('ok');
    await loadSale(saleId);
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 3 }, NOW)).kind).toBe('accepted');

    expect(await restockItem(lua.scripts, { saleId, sku: 'phone-x' }, { quantity: 5 })).toEqual({ code: 'OK', availableAfter: 12, relisted: false, held: 0 });
    expect(await lua.catalog.restock(saleId, 'phone-x', 1)).toEqual({ ok: true, available: 13, relisted: false });

    expect(await stock(saleId)).toEqual(['13', '16', '']);
  });

  it('when a sold-out item is restocked, then it sells again and its first sell-out time is kept', async () => {
    const saleId = newSaleId('sold-out');
    await loadSale(saleId, [item({ stock: 1 })]);
    const reservations = fresh();
    expect(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).toMatchObject({ soldOutNow: true });
    expect(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 1 }, NOW)).toMatchObject({ code: 'SOLD_OUT' });

    expect(await lua.catalog.restock(saleId, 'phone-x', 2)).toEqual({ ok: true, available: 2, relisted: false });
    reservations.closedItems.reopen(saleId, 'phone-x');

    expect(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 1 }, NOW + 10)).toMatchObject({ kind: 'accepted', availableAfter: 1 });
    expect(await lua.redis.hget(lua.keys(saleId).item('phone-x'), 'soldOutAt')).toBe(String(NOW));
  });

  it('when an item delisted for low stock (units) is restocked above its level, then it is relisted and the rule fires again at the level', async () => {
    const saleId = newSaleId('units-relist');
    await loadSale(saleId, [item({ stock: 100, lowStock: { units: 20 } })]);
    expect(acceptedOf(await rush(users(saleId, 150)))).toHaveLength(80);
    expect(await stock(saleId)).toEqual(['20', '100', 'low_stock']);

    expect(await lua.catalog.restock(saleId, 'phone-x', 30)).toEqual({ ok: true, available: 50, relisted: true });
    expect(await stock(saleId)).toEqual(['50', '130', '']);

    const results = await rush(users(saleId, 150, 'again'));
    const accepted = acceptedOf(results);
    expect(accepted).toHaveLength(30);
    expect(accepted.filter((r) => r.delistedNow).map((r) => r.availableAfter)).toEqual([20]);
    expect(await stock(saleId)).toEqual(['20', '130', 'low_stock']);
  });

  it('when a low-stock item is restocked but stays at or below its level, then it stays delisted until a restock lifts it above', async () => {
    const saleId = newSaleId('units-boundary');
    await loadSale(saleId, [item({ stock: 3, lowStock: { units: 5 } })]);
    expect(await stock(saleId)).toEqual(['3', '3', 'low_stock']);

    expect(await restockItem(lua.scripts, { saleId, sku: 'phone-x' }, { quantity: 2 })).toEqual({ code: 'OK', availableAfter: 5, relisted: false, held: 0 });
    expect(await stock(saleId)).toEqual(['5', '5', 'low_stock']);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).toMatchObject({ code: 'ITEM_DELISTED' });

    expect(await restockItem(lua.scripts, { saleId, sku: 'phone-x' }, { quantity: 1 })).toEqual({ code: 'OK', availableAfter: 6, relisted: true, held: 0 });
    expect(await stock(saleId)).toEqual(['6', '6', '']);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).toMatchObject({ kind: 'accepted', delistedNow: true });
  });

  it('when an item delisted at 20 percent is restocked, then the restock counts in the percentage base', async () => {
    const saleId = newSaleId('pct-base');
    await loadSale(saleId, [item({ stock: 100, lowStock: { percent: 20 } })]);
    expect(acceptedOf(await rush(users(saleId, 150)))).toHaveLength(80);
    expect(await stock(saleId)).toEqual(['20', '100', 'low_stock']);

    expect(await lua.catalog.restock(saleId, 'phone-x', 100)).toEqual({ ok: true, available: 120, relisted: true });

    // 20 percent of 200 is 40: exactly 80 more sell.
    const accepted = acceptedOf(await rush(users(saleId, 200, 'again')));
    expect(accepted).toHaveLength(80);
    expect(accepted.filter((r) => r.delistedNow).map((r) => r.availableAfter)).toEqual([40]);
    expect(await stock(saleId)).toEqual(['40', '200', 'low_stock']);
  });

  it('when a percent-delisted item is restocked to exactly its level, then it stays delisted', async () => {
    const saleId = newSaleId('pct-boundary');
    // 10 units at 50 percent: listed at load; one order of 8 falls to 2, below the level of 5.
    await loadSale(saleId, [item({ stock: 10, perUserLimit: 10, lowStock: { percent: 50 } })]);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 8 }, NOW)).toMatchObject({ delistedNow: true, availableAfter: 2 });

    // (2 + 6) * 100 = 800 <= 50 * (10 + 6) = 800: still at the level.
    expect(await lua.catalog.restock(saleId, 'phone-x', 6)).toEqual({ ok: true, available: 8, relisted: false });
    expect(await stock(saleId)).toEqual(['8', '16', 'low_stock']);
    // (8 + 2) * 100 = 1000 > 50 * 18 = 900: above it.
    expect(await lua.catalog.restock(saleId, 'phone-x', 2)).toEqual({ ok: true, available: 10, relisted: true });
    expect(await stock(saleId)).toEqual(['10', '18', '']);
  });

  it('when an operator-delisted item is restocked, then it stays delisted', async () => {
    const saleId = newSaleId('operator');
    await loadSale(saleId);
    await lua.catalog.delist(saleId, 'phone-x', NOW);

    expect(await lua.catalog.restock(saleId, 'phone-x', 10)).toEqual({ ok: true, available: 20, relisted: false });

    expect(await stock(saleId)).toEqual(['20', '20', 'operator']);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).toMatchObject({ code: 'ITEM_DELISTED' });
  });

  it('when the item does not exist, then ITEM_NOT_FOUND is returned and no item hash is created', async () => {
    const saleId = newSaleId('missing');
    await loadSale(saleId);
    const keys = lua.keys(saleId);

    expect(await restockItem(lua.scripts, { saleId, sku: 'ghost' }, { quantity: 5 })).toEqual({ code: 'ITEM_NOT_FOUND' });
    expect(await lua.catalog.restock(saleId, 'ghost', 5)).toEqual({ ok: false, code: 'ITEM_NOT_FOUND' });

    expect(await lua.redis.exists(keys.item('ghost'))).toBe(0);
    expect(await stock(saleId)).toEqual(['10', '10', '']);
  });

  it('when an item is restocked, then the reopening is announced on the stock-events channel', async () => {
    const saleId = newSaleId('announce');
    await loadSale(saleId);

    expect(await lua.announced(() => lua.catalog.restock(saleId, 'phone-x', 1))).toEqual([{ saleId, sku: 'phone-x' }]);
  });

  it('when restocks race a rush over 8 connections, then available = initial + restocks − sold and never goes below zero', async () => {
    const saleId = newSaleId('race');
    await loadSale(saleId, [item({ stock: 50 })]);
    const keys = lua.keys(saleId);

    const attempts = rush(users(saleId, 400));
    const restocks = Promise.all(Array.from({ length: 5 }, () => lua.catalog.restock(saleId, 'phone-x', 10)));
    const [results] = await Promise.all([attempts, restocks]);

    const accepted = acceptedOf(results);
    const [available, total] = (await stock(saleId)).map(Number);
    expect(total).toBe(100);
    expect(available).toBeGreaterThanOrEqual(0);
    expect(accepted.length + (available ?? NaN)).toBe(100);
    expect(accepted.every((r) => r.availableAfter >= 0)).toBe(true);
    expect(await lua.redis.xlen(keys.outbox)).toBe(accepted.length);
    expect(await lua.redis.hlen(keys.users('phone-x'))).toBe(accepted.length);
  });
});
