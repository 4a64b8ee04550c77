// closeSale-1.lua against real Redis: closing ends the sale for every item at once, a second
// close keeps the first time, an unknown sale is refused without writing, and orders racing
// the close are either in (recorded) or out (refused), never half.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SaleItemDefinition } from '../../../src/sales/sale.ts';
import type { Reservation } from '../../../src/orders/reservations.ts';
import { closeSale } from '../../../src/stock/scripts/close-sale.ts';
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

    expect(await closeSale(lua.scripts, { saleId }, { now: NOW })).toEqual({ code: 'OK', closedAt: NOW });

    expect(await lua.redis.hget(keys.sale, 'closedAt')).toBe(String(NOW));
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
  });

  it('when the sale does not exist, then SALE_NOT_FOUND is returned and no sale hash is created', async () => {
    const saleId = newSaleId('missing');
    const keys = lua.keys(saleId);

    expect(await closeSale(lua.scripts, { saleId }, { now: NOW })).toEqual({ code: 'SALE_NOT_FOUND' });
    expect(await lua.catalog.close(saleId, NOW)).toEqual({ ok: false });

    expect(await lua.redis.exists(keys.sale)).toBe(0);
  });

  it('when a sale is closed before it starts, then attempts are refused with SALE_ENDED, not SALE_NOT_STARTED', async () => {
    const saleId = newSaleId('before-start');
    await loadSale(saleId, [item()], NOW + 60_000);
    expect(await lua.catalog.close(saleId, NOW)).toEqual({ ok: true, closedAt: NOW });

    const result = await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW + 1);

    expect(result).toEqual({ kind: 'refused', code: 'SALE_ENDED', fromMemory: false });
  });

  it('when the close is queued between orders on one connection, then orders before it are accepted and orders after it refused', async () => {
    const saleId = newSaleId('between');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 100 })]);
    const reservations = fresh();
    const attempt = (i: number) => reservations.reserve({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 }, NOW);

    // Not awaited in between: ioredis sends them in this order on one connection, Redis runs them in order.
    const before = [0, 1, 2, 3, 4].map(attempt);
    const close = lua.catalog.close(saleId, NOW);
    const after = [5, 6, 7, 8, 9].map(attempt);
    const [early, closed, late] = await Promise.all([Promise.all(before), close, Promise.all(after)]);

    expect(closed).toEqual({ ok: true, closedAt: NOW });
    expect(early.map((r) => r.kind)).toEqual(Array(5).fill('accepted'));
    expect(late.every((r: Reservation) => r.kind === 'refused' && r.code === 'SALE_ENDED')).toBe(true);
    expect(await lua.redis.hget(lua.keys(saleId).item('phone-x'), 'available')).toBe('95');
    expect(await lua.redis.xlen(lua.keys(saleId).outbox)).toBe(5);
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
