// Items split into K > 1 stock shards, against real Redis, through Reservations on 8 connections
// (each its own process memory): the item answers SOLD_OUT only when its total is 0, however the
// shoppers are spread over the shards; the per-user cap holds in a rush; the low-stock rule
// applies to the item's total (the level's units are held on shard 0 and never sold); restock and
// relist move the held units; a close during a rush ends every later attempt.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReserveRequest } from '../../../src/orders/reservations.ts';
import { homeShard } from '../../../src/stock/keys.ts';
import { StockTransfers } from '../../../src/stock/transfers.ts';
import { acceptedOf, luaFixture, refusalCodes, saleItem } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const lua = luaFixture({ now: NOW, salePrefix: 'sharded', connections: 8 });
const { newSaleId, loadSale, rush, fresh } = lua;

beforeAll(() => lua.open());
afterAll(() => lua.close());

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

/** `n` user ids whose home shard of K is `shard`. */
function usersHomedOn(shard: number, shards: number, n: number, tag: string): string[] {
  const users: string[] = [];
  for (let i = 0; users.length < n; i++) if (homeShard(`${tag}-${i}`, shards) === shard) users.push(`${tag}-${i}`);
  return users;
}

/** The item's totals: every shard's available and outPending, and shard 0's held. */
const totals = (saleId: string, shards: number) => new StockTransfers(lua.scripts).totals(saleId, 'phone-x', shards);
/** Units left: Σ available + Σ outPending + held (what the storefront shows). */
async function left(saleId: string, shards: number): Promise<number> {
  const t = await totals(saleId, shards);
  return sum(t.available) + sum(t.outPending) + t.held;
}

describe('an item in 4 stock shards: SOLD_OUT only at a total of 0', () => {
  it('when 150 shoppers all homed on one shard rush 100 units spread over 4 shards, then all 100 sell (a shopper who lost the pull races is served on asking again) and SOLD_OUT comes only at a total of 0', async () => {
    const saleId = newSaleId('one-home');
    await loadSale(saleId, [saleItem({ stock: 100, perUserLimit: 1, stockShards: 4 })]);
    const users = usersHomedOn(2, 4, 150, `${saleId}-u`);
    const results = await rush(users.map((userId) => ({ saleId, sku: 'phone-x', userId, quantity: 1 })));
    expect([...refusalCodes(results)].every((code) => code === 'SOLD_OUT' || code === 'INSUFFICIENT_STOCK')).toBe(true);
    // Under heavy load a shopper may lose both pull races (INSUFFICIENT_STOCK): asked again, one by
    // one, they are served while units are left, and told SOLD_OUT only once the total is 0.
    let sold = acceptedOf(results).length;
    for (const [i, result] of results.entries()) {
      if (result.kind !== 'refused' || result.code !== 'INSUFFICIENT_STOCK') continue;
      const again = await fresh().reserve({ saleId, sku: 'phone-x', userId: users[i] ?? '', quantity: 1 }, NOW + 1);
      if (sold < 100) expect(again.kind).toBe('accepted');
      else expect(again).toMatchObject({ code: 'SOLD_OUT' });
      if (again.kind === 'accepted') sold++;
    }
    expect(sold).toBe(100);
    expect(await left(saleId, 4)).toBe(0);
    expect((await totals(saleId, 4)).available.every((units) => units === 0)).toBe(true);
    // Every order was taken on the shoppers' home shard.
    expect(new Set(acceptedOf(results).map((r) => r.order.shard))).toEqual(new Set([2]));
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: users[149] ?? '', quantity: 1 }, NOW + 2)).toMatchObject({ code: 'SOLD_OUT' });
  });

  it('when exactly as many shoppers as units, all homed on one shard, rush an item of 4 shards, then none is told SOLD_OUT, and those who lost a pull race are served on retry until the total is 0', async () => {
    const saleId = newSaleId('as-many');
    await loadSale(saleId, [saleItem({ stock: 120, perUserLimit: 1, stockShards: 4 })]);
    const users = usersHomedOn(3, 4, 120, `${saleId}-u`);
    const results = await rush(users.map((userId) => ({ saleId, sku: 'phone-x', userId, quantity: 1 })));

    // A shopper whose two pulls were both emptied by others first is told INSUFFICIENT_STOCK (the
    // bounded retry), never SOLD_OUT while units are left.
    expect([...refusalCodes(results)].every((code) => code === 'INSUFFICIENT_STOCK')).toBe(true);
    const retry = fresh();
    for (const [i, result] of results.entries()) {
      if (result.kind === 'accepted') continue;
      expect((await retry.reserve({ saleId, sku: 'phone-x', userId: users[i] ?? '', quantity: 1 }, NOW + 1)).kind).toBe('accepted');
    }
    expect(await left(saleId, 4)).toBe(0);
  });

  it('when shoppers homed on one shard order one by one, then each is served until the total is 0, and only then SOLD_OUT', async () => {
    const saleId = newSaleId('one-by-one');
    await loadSale(saleId, [saleItem({ stock: 9, perUserLimit: 1, stockShards: 4 })]);
    const users = usersHomedOn(0, 4, 10, `${saleId}-u`);
    const reservations = fresh();
    for (const [i, userId] of users.entries()) {
      const result = await reservations.reserve({ saleId, sku: 'phone-x', userId, quantity: 1 }, NOW + i);
      if (i < 9) expect(result.kind, `shopper ${i}`).toBe('accepted');
      else expect(result).toEqual({ kind: 'refused', code: 'SOLD_OUT', fromMemory: false });
    }
    expect(await left(saleId, 4)).toBe(0);
    expect(await lua.itemFields(saleId, 'phone-x', 'soldOutAt')).toEqual([String(NOW + 9)]);
  });

  it('when a shopper asks for more than their home shard holds, then the units are pulled in; more than the total is INSUFFICIENT_STOCK with nothing taken', async () => {
    const saleId = newSaleId('pull');
    await loadSale(saleId, [saleItem({ stock: 8, perUserLimit: 10, stockShards: 4 })]);
    const [userId] = usersHomedOn(1, 4, 1, `${saleId}-u`);
    const request = { saleId, sku: 'phone-x', userId: userId ?? '', quantity: 6 };

    expect(await fresh().reserve({ ...request, quantity: 9 }, NOW)).toEqual({ kind: 'refused', code: 'INSUFFICIENT_STOCK', fromMemory: false });
    expect(await left(saleId, 4)).toBe(8);
    const accepted = await fresh().reserve(request, NOW);
    expect(accepted).toMatchObject({ kind: 'accepted', order: { shard: 1, quantity: 6 } });
    expect(await left(saleId, 4)).toBe(2);
  });
});

describe('an item in 4 stock shards: the per-user cap', () => {
  it('when 40 shoppers each fire 6 single-unit attempts at once against a cap of 3, then none holds more than 3 and nothing is oversold', async () => {
    const saleId = newSaleId('cap');
    await loadSale(saleId, [saleItem({ stock: 1_000, perUserLimit: 3, stockShards: 4 })]);
    const requests: ReserveRequest[] = [];
    for (let copy = 0; copy < 6; copy++) for (let u = 0; u < 40; u++) requests.push({ saleId, sku: 'phone-x', userId: `${saleId}-u${u}`, quantity: 1 });

    const results = await rush(requests);

    const perUser = new Map<string, number>();
    for (const r of acceptedOf(results)) perUser.set(r.order.userId, (perUser.get(r.order.userId) ?? 0) + r.order.quantity);
    expect([...perUser.values()].every((units) => units === 3)).toBe(true);
    expect(perUser.size).toBe(40);
    expect(refusalCodes(results)).toEqual(new Set(['PER_USER_LIMIT_EXCEEDED']));
    expect(await left(saleId, 4)).toBe(1_000 - 120);
    const live = await lua.liveQuantities(saleId);
    expect(Object.values(live).map(Number).every((units) => units === 3)).toBe(true);
  });
});

describe('an item in 4 stock shards: low stock on the total', () => {
  it('when 45 units with a level of 5 units meet a rush of single-unit orders, then exactly 40 sell, the total ends at 5 and the item is delisted', async () => {
    const saleId = newSaleId('low-units');
    await loadSale(saleId, [saleItem({ stock: 45, perUserLimit: 1, lowStock: { units: 5 }, stockShards: 4 })]);
    const results = await rush(Array.from({ length: 120 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `${saleId}-u${i}`, quantity: 1 })));

    expect(acceptedOf(results)).toHaveLength(40);
    expect(await left(saleId, 4)).toBe(5);
    const after = await totals(saleId, 4);
    expect(after.held).toBe(5);
    expect(new Set(after.delisted)).toEqual(new Set(['low_stock']));
    expect(refusalCodes(results).has('ITEM_DELISTED')).toBe(true);
    expect(refusalCodes(results).has('SOLD_OUT')).toBe(false);
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: `${saleId}-late`, quantity: 1 }, NOW)).toMatchObject({ code: 'ITEM_DELISTED' });
  });

  it.each([1, 2, 3])('when quantities 1 to 3 rush an item of 45 with a level of 5 (round %i), then the total ends between 5 and 5 + 3 − 1, never below the level', async () => {
    const saleId = newSaleId('low-mixed');
    await loadSale(saleId, [saleItem({ stock: 45, perUserLimit: 10, lowStock: { units: 5 }, stockShards: 4 })]);
    const results = await rush(Array.from({ length: 90 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `${saleId}-u${i}`, quantity: 1 + (i % 3) })));
    const sold = sum(acceptedOf(results).map((r) => r.order.quantity));

    const total = await left(saleId, 4);
    expect(total).toBe(45 - sold);
    expect(total).toBeGreaterThanOrEqual(5);
    expect(total).toBeLessThanOrEqual(5 + 3 - 1);
    // At the level exactly, the item is delisted; above it, the units left are fewer than some order asked for.
    const after = await totals(saleId, 4);
    if (total === 5) expect(new Set(after.delisted)).toEqual(new Set(['low_stock']));
  });

  it('when a delisted item is restocked, then the level is topped up first and the rest relists it; an operator relist puts the held units on sale', async () => {
    const saleId = newSaleId('restock');
    await loadSale(saleId, [saleItem({ stock: 20, perUserLimit: 100, lowStock: { percent: 25 }, stockShards: 2 })]);
    // 5 held (25 % of 20), 15 on sale; sell them all, then one more attempt delists.
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'big', quantity: 15 }, NOW)).kind).toBe('accepted');
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'next', quantity: 1 }, NOW)).toMatchObject({ code: 'ITEM_DELISTED' });

    // Restock 20: total 40, the level becomes 10: 5 more held, 15 on sale, relisted.
    expect(await lua.catalog.restock(saleId, 'phone-x', 20)).toEqual({ ok: true, available: 15, relisted: true });
    expect((await totals(saleId, 2)).held).toBe(10);
    expect(await left(saleId, 2)).toBe(25);
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'next', quantity: 1 }, NOW + 1)).kind).toBe('accepted');

    // An operator's relist releases the held units into shard 0: the level no longer protects them.
    await lua.catalog.delist(saleId, 'phone-x', NOW + 2);
    expect(await lua.catalog.relist(saleId, 'phone-x')).toMatchObject({ ok: true, available: 24 });
    expect((await totals(saleId, 2)).held).toBe(0);
    expect((await fresh().reserve({ saleId, sku: 'phone-x', userId: 'big', quantity: 24 }, NOW + 3)).kind).toBe('accepted');
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'last', quantity: 1 }, NOW + 4)).toMatchObject({ code: 'SOLD_OUT' });
  });

  it('when an operator delisted the item, then a restock does not relist it', async () => {
    const saleId = newSaleId('operator-stays');
    await loadSale(saleId, [saleItem({ stock: 10, lowStock: { units: 2 }, stockShards: 3 })]);
    await lua.catalog.delist(saleId, 'phone-x', NOW);
    expect(await lua.catalog.restock(saleId, 'phone-x', 5)).toMatchObject({ ok: true, relisted: false });
    expect(new Set((await totals(saleId, 3)).delisted)).toEqual(new Set(['operator']));
  });
});

describe('an item in 4 stock shards: a close during the rush', () => {
  it('when the sale is closed while 400 attempts rush a 4-shard item, then every attempt after the close returned is SALE_ENDED and every 201 is recorded', async () => {
    const saleId = newSaleId('close');
    await loadSale(saleId, [saleItem({ stock: 300, perUserLimit: 1, stockShards: 4 })]);
    const attempts = rush(Array.from({ length: 400 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `${saleId}-u${i}`, quantity: 1 })));
    const closed = await lua.catalog.close(saleId, NOW);
    const late = await Promise.all(
      Array.from({ length: 40 }, (_, i) => fresh().reserve({ saleId, sku: 'phone-x', userId: `${saleId}-late${i}`, quantity: 1 }, NOW + 1)),
    );
    const results = await attempts;

    expect(closed).toMatchObject({ ok: true });
    expect(late.every((r) => r.kind === 'refused' && r.code === 'SALE_ENDED')).toBe(true);
    const accepted = acceptedOf(results).length;
    expect(results.every((r) => r.kind === 'accepted' || (r.kind === 'refused' && ['SALE_ENDED', 'SOLD_OUT', 'INSUFFICIENT_STOCK'].includes(r.code)))).toBe(true);
    expect(await left(saleId, 4)).toBe(300 - accepted);
    expect(await lua.outboxLength(saleId)).toBe(accepted);
  });
});
