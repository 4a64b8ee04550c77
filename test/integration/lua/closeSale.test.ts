// closeSale-1.lua against real Redis (key layout 2): closing closes the anchor first (the first
// close time C wins) then every stock shard's copy of the sale with C, so every item of the sale
// ends at once; a second close keeps the first time, an unknown sale is refused without writing,
// and orders racing the close are either in (recorded) or out (refused), never half.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SaleItemDefinition } from '../../../src/sales/sale.ts';
import type { Reservation } from '../../../src/orders/reservations.ts';
import { closeAnchor, closeShard } from '../../../src/stock/scripts/close-sale.ts';
import { anchorKey, shardKeys } from '../../../src/stock/keys.ts';
import { luaFixture, saleItem as item, shoppers as users } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;

const lua = luaFixture({ now: NOW, salePrefix: 'close', connections: 8 });
const { newSaleId, fresh, rush } = lua;

/** Loads a sale (open since a minute ago unless `startsAt` says otherwise). */
const loadSale = (id: string, items?: SaleItemDefinition[], startsAt = NOW - 60_000) => lua.loadSale(id, items, { startsAt });

beforeAll(() => lua.open());
afterAll(() => lua.close());

describe('closeSale', () => {
  it('when an open sale is closed, then closedAt is set to now and every item refuses with SALE_ENDED', async () => {
    const saleId = newSaleId('ok');
    await loadSale(saleId, [item(), item({ sku: 'tv-y', name: 'TV Y' })]);
    const keys = lua.keys(saleId);

    expect(await lua.catalog.close(saleId, NOW)).toEqual({ ok: true, closedAt: NOW });

    expect(await lua.redis.hget(keys.anchor, 'closedAt')).toBe(String(NOW));
    expect(await lua.redis.hget(keys.sale, 'closedAt')).toBe(String(NOW));
    expect(await lua.redis.hget(lua.keys(saleId, 'tv-y').sale, 'closedAt')).toBe(String(NOW));
    for (const sku of ['phone-x', 'tv-y']) {
      expect(await fresh().reserve({ saleId, sku, userId: 'u-1', quantity: 1 }, NOW + 1)).toEqual({
        kind: 'refused',
        code: 'SALE_ENDED',
        fromMemory: false,
      });
    }
    expect(await lua.redis.hget(keys.item('phone-x'), 'available')).toBe('10');
  });

  it('when a closed sale is closed again, then the first close time is kept and returned', async () => {
    const saleId = newSaleId('twice');
    await loadSale(saleId);

    expect(await lua.catalog.close(saleId, NOW)).toEqual({ ok: true, closedAt: NOW });
    expect(await lua.catalog.close(saleId, NOW + 5_000)).toEqual({ ok: true, closedAt: NOW });

    expect(await lua.redis.hget(lua.keys(saleId).sale, 'closedAt')).toBe(String(NOW));
    expect(await lua.redis.hget(lua.keys(saleId).anchor, 'closedAt')).toBe(String(NOW));
  });

  it('when a shard copy already carries a close time, then closing it again with another time keeps the first (monotonic)', async () => {
    const saleId = newSaleId('monotonic');
    await loadSale(saleId);
    const ref = { saleId, sku: 'phone-x', shard: 0, shards: 1 };
    expect(await closeShard(lua.scripts, ref, NOW)).toEqual({ code: 'OK', closedAt: NOW });
    expect(await closeShard(lua.scripts, ref, NOW + 1)).toEqual({ code: 'OK', closedAt: NOW });
    // The anchor decides C for the whole sale: a close after this one still answers its own first time.
    expect(await closeAnchor(lua.scripts, saleId, NOW + 2)).toEqual({ code: 'OK', closedAt: NOW + 2 });
  });

  it('when a close reached the anchor but not every shard (cut short), then closing again carries the first close time to the rest', async () => {
    const saleId = newSaleId('half-closed');
    await loadSale(saleId, [item({ stockShards: 3 })]);
    expect(await closeAnchor(lua.scripts, saleId, NOW)).toEqual({ code: 'OK', closedAt: NOW });
    expect(await lua.redis.hget(shardKeys(lua.prefix, saleId, 'phone-x', 2).sale, 'closedAt')).toBe('');

    expect(await lua.catalog.close(saleId, NOW + 9_000)).toEqual({ ok: true, closedAt: NOW });

    for (let k = 0; k < 3; k++) expect(await lua.redis.hget(shardKeys(lua.prefix, saleId, 'phone-x', k).sale, 'closedAt')).toBe(String(NOW));
  });

  it('when the sale does not exist, then SALE_NOT_FOUND is returned and no sale hash is created', async () => {
    const saleId = newSaleId('missing');
    const keys = lua.keys(saleId);

    expect(await closeAnchor(lua.scripts, saleId, NOW)).toEqual({ code: 'SALE_NOT_FOUND' });
    expect(await lua.catalog.close(saleId, NOW)).toEqual({ ok: false });

    expect(await lua.redis.exists(keys.anchor)).toBe(0);
    expect(await lua.redis.exists(anchorKey(lua.prefix, saleId))).toBe(0);
  });

  it('when a sale is closed before it starts, then attempts are refused with SALE_ENDED, not SALE_NOT_STARTED', async () => {
    const saleId = newSaleId('before-start');
    await loadSale(saleId, [item()], NOW + 60_000);
    expect(await lua.catalog.close(saleId, NOW)).toEqual({ ok: true, closedAt: NOW });

    const result = await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW + 1);

    expect(result).toEqual({ kind: 'refused', code: 'SALE_ENDED', fromMemory: false });
  });

  it('when orders race a close, then every order that got in was recorded and every order sent after the close returned is refused', async () => {
    const saleId = newSaleId('between');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 100 })]);
    const reservations = fresh();
    const attempt = (i: number) => reservations.reserve({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 }, NOW);

    const [early, closed] = await Promise.all([Promise.all([0, 1, 2, 3, 4].map(attempt)), lua.catalog.close(saleId, NOW)]);
    // The close reaches every stock shard before it returns.
    const late = await Promise.all([5, 6, 7, 8, 9].map(attempt));

    expect(closed).toEqual({ ok: true, closedAt: NOW });
    const got = early.filter((r) => r.kind === 'accepted').length;
    expect(early.every((r) => r.kind === 'accepted' || (r.kind === 'refused' && r.code === 'SALE_ENDED'))).toBe(true);
    expect(late.every((r: Reservation) => r.kind === 'refused' && r.code === 'SALE_ENDED')).toBe(true);
    expect(await lua.redis.hget(lua.keys(saleId).item('phone-x'), 'available')).toBe(String(100 - got));
    expect(await lua.redis.xlen(lua.keys(saleId).outbox)).toBe(got);
  });

  it('when a sale is closed during a rush over 8 connections, then every attempt is either a recorded order or a refusal, and none is accepted after', async () => {
    const saleId = newSaleId('rush');
    await loadSale(saleId, [item({ stock: 1_000, perUserLimit: 1 })]);
    const keys = lua.keys(saleId);
    const attempts = rush(users(saleId, 400));
    const close = lua.catalog.close(saleId, NOW);
    const results = await attempts;
    await close;

    const accepted = results.filter((r) => r.kind === 'accepted').length;
    const refused = results.filter((r) => r.kind === 'refused' && r.code === 'SALE_ENDED').length;
    expect(accepted + refused).toBe(400);
    expect(await lua.redis.xlen(keys.outbox)).toBe(accepted);
    expect(await lua.redis.hget(keys.item('phone-x'), 'available')).toBe(String(1_000 - accepted));
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'late', quantity: 1 }, NOW)).toMatchObject({ code: 'SALE_ENDED' });
    expect(await lua.redis.xlen(keys.outbox)).toBe(accepted);
  });
});
