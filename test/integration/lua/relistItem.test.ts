// relistItem-1.lua against real Redis: a relist reopens an item whatever delisted it, the
// low-stock rule does not fire again until stock next falls to its level from above, the
// reopening is announced, and an unknown item is refused without writing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relistItem } from '../../../src/stock/scripts/relist-item.ts';
import { acceptedOf, luaFixture, refusalCodes, saleItem as item, shoppers as users } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;

const lua = luaFixture({ now: NOW, salePrefix: 'relist', connections: 8 });
const { newSaleId, loadSale, fresh, rush } = lua;
const itemState = (saleId: string) => lua.itemFields(saleId, 'phone-x', 'delisted', 'available');

beforeAll(() => lua.open());
afterAll(() => lua.close());

describe('relistItem', () => {
  it('when an operator-delisted item is relisted, then it returns the stock left and orders are accepted again', async () => {
    const saleId = newSaleId('operator');
    await loadSale(saleId);
    await lua.catalog.delist(saleId, 'phone-x', NOW);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).toMatchObject({ code: 'ITEM_DELISTED' });

    expect(await relistItem(lua.scripts, { saleId, sku: 'phone-x', shard: 0, shards: 1 })).toEqual({ code: 'OK', available: 10 });

    expect(await itemState(saleId)).toEqual(['', '10']);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).toMatchObject({ kind: 'accepted', availableAfter: 9 });
  });

  it('when an item already listed is relisted, then nothing but the answer changes', async () => {
    const saleId = newSaleId('listed');
    await loadSale(saleId);
    const before = await lua.redis.hgetall(lua.keys(saleId).item('phone-x'));

    expect(await lua.catalog.relist(saleId, 'phone-x')).toEqual({ ok: true, available: 10, relisted: true });

    expect(await lua.redis.hgetall(lua.keys(saleId).item('phone-x'))).toEqual(before);
  });

  it('when the item does not exist, then ITEM_NOT_FOUND is returned, no item hash is created and nothing is announced', async () => {
    const saleId = newSaleId('missing');
    await loadSale(saleId);
    const announced = await lua.announced(async () => {
      expect(await relistItem(lua.scripts, { saleId, sku: 'ghost', shard: 0, shards: 1 })).toEqual({ code: 'ITEM_NOT_FOUND' });
      expect(await lua.catalog.relist(saleId, 'ghost')).toEqual({ ok: false, code: 'ITEM_NOT_FOUND' });
    });

    expect(await lua.redis.exists(lua.keys(saleId).item('ghost'))).toBe(0);
    expect(announced).toEqual([]);
  });

  it('when an item is relisted, then the reopening is announced on the stock-events channel', async () => {
    const saleId = newSaleId('announce');
    await loadSale(saleId);
    await lua.catalog.delist(saleId, 'phone-x', NOW);

    expect(await lua.announced(() => lua.catalog.relist(saleId, 'phone-x'))).toEqual([{ saleId, sku: 'phone-x' }]);
  });

  it('when an item delisted for low stock is relisted, then 300 racing users buy exactly the rest and the rule does not fire again', async () => {
    const saleId = newSaleId('low-stock');
    await loadSale(saleId, [item({ stock: 100, lowStock: { units: 20 } })]);
    const keys = lua.keys(saleId);
    expect(acceptedOf(await rush(users(saleId, 150)))).toHaveLength(80);
    expect(await lua.redis.hmget(keys.item('phone-x'), 'delisted', 'available')).toEqual(['low_stock', '20']);

    expect(await lua.catalog.relist(saleId, 'phone-x')).toEqual({ ok: true, available: 20, relisted: true });
    const results = await rush(users(saleId, 300).map((r) => ({ ...r, userId: `second-${r.userId}` })));

    const accepted = acceptedOf(results);
    expect(accepted).toHaveLength(20);
    expect(accepted.some((r) => r.delistedNow)).toBe(false);
    expect(accepted.filter((r) => r.soldOutNow)).toHaveLength(1);
    expect(refusalCodes(results)).toEqual(new Set(['SOLD_OUT']));
    expect(await itemState(saleId)).toEqual(['', '0']);
    expect(await lua.redis.xlen(keys.outbox)).toBe(100);
  });

  it('when a relisted item is restocked above its level and sells down to it again, then the rule fires again', async () => {
    const saleId = newSaleId('fires-again');
    await loadSale(saleId, [item({ stock: 3, perUserLimit: 100, lowStock: { units: 2 } })]);
    const reservations = fresh();
    const buy = (quantity: number, now: number) => reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity }, now);

    expect(await buy(1, NOW)).toMatchObject({ kind: 'accepted', delistedNow: true, availableAfter: 2 });
    await lua.catalog.relist(saleId, 'phone-x');
    reservations.closedItems.reopen(saleId, 'phone-x');
    expect(await buy(1, NOW + 1)).toMatchObject({ kind: 'accepted', delistedNow: false, availableAfter: 1 });

    expect(await lua.catalog.restock(saleId, 'phone-x', 4)).toEqual({ ok: true, available: 5, relisted: false });
    expect(await buy(2, NOW + 2)).toMatchObject({ kind: 'accepted', delistedNow: false, availableAfter: 3 });
    expect(await buy(1, NOW + 3)).toMatchObject({ kind: 'accepted', delistedNow: true, availableAfter: 2 });
    expect(await lua.redis.hmget(lua.keys(saleId).item('phone-x'), 'delisted', 'delistedAt')).toEqual(['low_stock', String(NOW + 3)]);
  });
});
