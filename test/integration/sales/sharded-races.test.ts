// Races between an operator's switches and the K > 1 reserve path, against real Redis. The
// interleaving is forced: the reserve path's StockMover is the real StockTransfers, and an
// operator's real restock or relist runs right after the reserve path read the item's totals,
// the window in which it decides to delist the item at its low-stock level.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Reservations, type StockMover } from '../../../src/orders/reservations.ts';
import { homeShard } from '../../../src/stock/keys.ts';
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

describe('an item in 2 stock shards: a read torn by a transfer', () => {
  it('when a whole transfer lands between the reads of two shards so that one read sees no units anywhere, then the item is not called sold out: a second read finds them and the attempt is served', async () => {
    const saleId = newSaleId('torn-read');
    await loadSale(saleId, [saleItem({ stock: 4, perUserLimit: 10, stockShards: 2 })]);
    const onShard = (shard: number) => Array.from({ length: 100 }, (_, i) => `torn-${i}`).filter((user) => homeShard(user, 2) === shard);
    const [buyer, racer] = onShard(0);
    // Shard 0 sells its 2 units; shard 1 still holds 2.
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: buyer!, quantity: 2 }, NOW)).kind).toBe('accepted');

    const real = new StockTransfers(lua.scripts);
    let torn = false;
    const tearing: StockMover = {
      // The first read sees shard 0 before, and shard 1 after, a transfer of shard 1's units to shard 0:
      // what reading two masters one after the other can see on a cluster.
      totals: async (id, sku, shards) => {
        if (torn) return real.totals(id, sku, shards);
        torn = true;
        const before = await real.totals(id, sku, shards);
        expect(await real.pullInto(id, sku, shards, 0, 2)).toBe(2);
        const after = await real.totals(id, sku, shards);
        return { ...after, available: [before.available[0]!, after.available[1]!], outPending: [before.outPending[0]!, after.outPending[1]!] };
      },
      pullInto: (id, sku, shards, to, need) => real.pullInto(id, sku, shards, to, need),
      recover: (id, sku, shards) => real.recover(id, sku, shards),
    };
    const racing = new Reservations(lua.scripts, { sharded: { transfers: tearing, delistLowStock: lua.catalog.delistLowStock.bind(lua.catalog) } });
    expect(await racing.reserve({ saleId, sku: 'phone-x', userId: racer!, quantity: 1 }, NOW + 1)).toMatchObject({ kind: 'accepted' });
    expect(torn).toBe(true);
  });
});
