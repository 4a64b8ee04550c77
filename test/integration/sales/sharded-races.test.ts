// Races between an operator's switches and the K > 1 reserve path, against real Redis. The
// interleaving is forced: the reserve path's StockMover is the real StockTransfers, and an
// operator's real restock or relist runs right after the reserve path read the item's totals,
// the window in which it decides to delist the item at its low-stock level.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Reservations, type StockMover } from '../../../src/orders/reservations.ts';
import { StockTransfers } from '../../../src/stock/transfers.ts';
import { luaFixture, saleItem } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const lua = luaFixture({ now: NOW, salePrefix: 'sharded-races' });
const { newSaleId, loadSale, fresh } = lua;

beforeAll(() => lua.open());
afterAll(() => lua.close());

/** Real transfers whose first totals() read is followed by `after` (run before it returns). */
function transfersThen(after: () => Promise<unknown>): StockMover {
  const real = new StockTransfers(lua.scripts);
  let fired = false;
  return {
    totals: async (saleId, sku, shards) => {
      const totals = await real.totals(saleId, sku, shards);
      if (!fired) {
        fired = true;
        await after();
      }
      return totals;
    },
    pullInto: (saleId, sku, shards, to, need) => real.pullInto(saleId, sku, shards, to, need),
    recover: (saleId, sku, shards) => real.recover(saleId, sku, shards),
  };
}

describe('an item in 2 stock shards: restock racing the low-stock delist', () => {
  it('when a restock lands between the reserve path reading a total of 0 above the level and its delist, then the item ends listed with the restocked units on sale', async () => {
    const saleId = newSaleId('restock-vs-delist');
    await loadSale(saleId, [saleItem({ stock: 20, perUserLimit: 100, lowStock: { units: 5 }, stockShards: 2 })]);
    // 5 held on shard 0, 15 on sale: sell all 15.
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'big', quantity: 15 }, NOW)).kind).toBe('accepted');

    let restocked: unknown;
    const catalog = lua.catalog;
    const racing = new Reservations(lua.scripts, {
      sharded: {
        transfers: transfersThen(async () => {
          restocked = await catalog.restock(saleId, 'phone-x', 10);
        }),
        delistLowStock: catalog.delistLowStock.bind(catalog),
      },
    });
    await racing.reserve({ saleId, sku: 'phone-x', userId: 'next', quantity: 1 }, NOW + 1);
    expect(restocked).toMatchObject({ ok: true });

    // The 10 restocked units are above the level (it stays 5 units): the item must sell them.
    const totals = await new StockTransfers(lua.scripts).totals(saleId, 'phone-x', 2);
    expect(totals.available.reduce((a, b) => a + b, 0) + totals.outPending.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(9);
    expect(new Set(totals.delisted)).toEqual(new Set(['']));
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'later', quantity: 1 }, NOW + 2)).kind).toBe('accepted');
  });
});

describe('an item in 2 stock shards: an operator relist racing the low-stock delist', () => {
  it('when an operator relists between the reserve path reading a total of 0 above the level and its delist, then the relist stands and the released held units sell', async () => {
    const saleId = newSaleId('relist-vs-delist');
    await loadSale(saleId, [saleItem({ stock: 20, perUserLimit: 100, lowStock: { units: 5 } , stockShards: 2 })]);
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'big', quantity: 15 }, NOW)).kind).toBe('accepted');

    const catalog = lua.catalog;
    const racing = new Reservations(lua.scripts, {
      sharded: {
        transfers: transfersThen(() => catalog.relist(saleId, 'phone-x')),
        delistLowStock: catalog.delistLowStock.bind(catalog),
      },
    });
    await racing.reserve({ saleId, sku: 'phone-x', userId: 'next', quantity: 1 }, NOW + 1);

    const totals = await new StockTransfers(lua.scripts).totals(saleId, 'phone-x', 2);
    expect(totals.held).toBe(0);
    expect(new Set(totals.delisted)).toEqual(new Set(['']));
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'later', quantity: 1 }, NOW + 2)).kind).toBe('accepted');
  });
});
