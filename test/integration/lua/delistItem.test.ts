// delistItem-1.lua against real Redis: an operator's delist stops orders at once, keeps the
// first delist time, takes over a low-stock delist (so a restock no longer relists), and an
// unknown item is refused without writing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { delistItem } from '../../../src/stock/scripts/delist-item.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;

const lua = luaFixture({ now: NOW, salePrefix: 'delist' });
const { newSaleId, loadSale, fresh } = lua;
const itemState = (saleId: string, sku = 'phone-x') => lua.itemFields(saleId, sku, 'delisted', 'delistedAt', 'available');

beforeAll(() => lua.open());
afterAll(() => lua.close());

describe('delistItem', () => {
  it('when a listed item is delisted, then it is marked as the operator\'s with the time, and orders are refused', async () => {
    const saleId = newSaleId('ok');
    await loadSale(saleId, [item(), item({ sku: 'tv-y', name: 'TV Y' })]);

    expect(await delistItem(lua.scripts, { saleId, sku: 'phone-x', shard: 0, shards: 1 }, { now: NOW })).toEqual({ code: 'OK' });

    expect(await itemState(saleId)).toEqual(['operator', String(NOW), '10']);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW + 1)).toEqual({
      kind: 'refused',
      code: 'ITEM_DELISTED',
      fromMemory: false,
    });
    // Only that item: the rest of the sale sells on.
    expect((await fresh().reserve({ saleId, sku: 'tv-y', userId: 'u-1', quantity: 1 }, NOW + 1)).kind).toBe('accepted');
  });

  it('when an item is delisted twice, then the first delist time is kept', async () => {
    const saleId = newSaleId('twice');
    await loadSale(saleId);

    expect(await lua.catalog.delist(saleId, 'phone-x', NOW)).toEqual({ ok: true });
    expect(await lua.catalog.delist(saleId, 'phone-x', NOW + 5_000)).toEqual({ ok: true });

    expect(await itemState(saleId)).toEqual(['operator', String(NOW), '10']);
  });

  it('when an item delisted for low stock is delisted by the operator, then it becomes the operator\'s and a restock does not relist it', async () => {
    const saleId = newSaleId('over-low-stock');
    await loadSale(saleId, [item({ stock: 3, lowStock: { units: 2 } })]);
    const sold = await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW);
    expect(sold).toMatchObject({ kind: 'accepted', delistedNow: true });
    expect(await itemState(saleId)).toEqual(['low_stock', String(NOW), '2']);

    expect(await lua.catalog.delist(saleId, 'phone-x', NOW + 1_000)).toEqual({ ok: true });
    expect(await itemState(saleId)).toEqual(['operator', String(NOW), '2']);

    expect(await lua.catalog.restock(saleId, 'phone-x', 50)).toEqual({ ok: true, available: 52, relisted: false });
    expect(await itemState(saleId)).toEqual(['operator', String(NOW), '52']);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 1 }, NOW + 2_000)).toMatchObject({ code: 'ITEM_DELISTED' });
  });

  it('when the item does not exist, then ITEM_NOT_FOUND is returned and no item hash is created', async () => {
    const saleId = newSaleId('missing');
    await loadSale(saleId);
    const keys = lua.keys(saleId);

    expect(await delistItem(lua.scripts, { saleId, sku: 'ghost', shard: 0, shards: 1 }, { now: NOW })).toEqual({ code: 'ITEM_NOT_FOUND' });
    expect(await lua.catalog.delist(saleId, 'ghost', NOW)).toEqual({ ok: false, code: 'ITEM_NOT_FOUND' });
    expect(await lua.catalog.delist(newSaleId('never-loaded'), 'phone-x', NOW)).toEqual({ ok: false, code: 'SALE_NOT_FOUND' });

    expect(await lua.redis.exists(keys.item('ghost'))).toBe(0);
    expect(await itemState(saleId)).toEqual(['', null, '10']);
  });

  it('when orders race a delist, then every order that got in was recorded and every order sent after the delist returned is refused', async () => {
    const saleId = newSaleId('between');
    await loadSale(saleId, [item({ stock: 100 })]);
    const reservations = fresh();
    const attempt = (i: number) => reservations.reserve({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 }, NOW);

    const before = [0, 1, 2].map(attempt);
    const [early, delisted] = await Promise.all([Promise.all(before), lua.catalog.delist(saleId, 'phone-x', NOW)]);
    // The delist fans out to every stock shard before it returns; only then is the item off sale everywhere.
    const late = await Promise.all([3, 4, 5].map(attempt));

    expect(delisted).toEqual({ ok: true });
    const got = early.filter((r) => r.kind === 'accepted').length;
    expect(early.every((r) => r.kind === 'accepted' || (r.kind === 'refused' && r.code === 'ITEM_DELISTED'))).toBe(true);
    expect(late.map((r) => (r.kind === 'refused' ? r.code : r.kind))).toEqual(['ITEM_DELISTED', 'ITEM_DELISTED', 'ITEM_DELISTED']);
    expect(await itemState(saleId)).toEqual(['operator', String(NOW), String(100 - got)]);
  });
});
