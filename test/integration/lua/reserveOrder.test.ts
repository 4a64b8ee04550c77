// reserveOrder-8.lua against real Redis: every reply code, that refusals write nothing, and the
// invariants under concurrency over several connections (no oversell, per-user limit, low-stock
// delist at the exact level, one order per idempotency key), plus the in-process sold-out path.
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderFromHash } from '../../../src/orders/order.ts';
import { parseStreamEntries } from '../../../src/orders/outbox.ts';
import type { SaleCatalog } from '../../../src/sales/catalog.ts';
import { shardKeys, tagHex } from '../../../src/stock/keys.ts';
import { mintOrderId } from '../../../src/stock/order-id.ts';
import { Reservations, USER_ORDERS_TTL_MS, type Reservation, type ReserveRequest } from '../../../src/orders/reservations.ts';
import { AttemptWindow } from '../../../src/stock/attempt-window.ts';
import { ClosedItems } from '../../../src/stock/closed-items.ts';
import type { ReserveRefusal } from '../../../src/stock/scripts/refusals.ts';
import { scriptSource, type Scripts } from '../../../src/stock/scripts/registry.ts';
import { IDEMPOTENCY_TTL_SECONDS, ORDER_RETENTION_MS, reserveOrder, type ReserveOrderReply } from '../../../src/stock/scripts/reserve-order.ts';
import { restockItem } from '../../../src/stock/scripts/restock-item.ts';
import type { TestContext } from '../../support/context.ts';
import { monitorRedis } from '../../support/monitor.ts';
import { shardZeroKeys } from '../../support/sale-state.ts';
import { acceptedOf, luaFixture, refusalCodes, saleItem as item, type Accepted } from '../../support/lua-fixtures.ts';

// Near the real clock: order records expire at an absolute time derived from `now`.
const NOW = Math.floor(Date.now() / 1000) * 1000;
const STARTS_AT = NOW - 60_000;
const ENDS_AT = NOW + 3_600_000;
const PAYMENT_WINDOW_MS = 900_000;
const CONNECTIONS = 8;

const lua = luaFixture({ now: NOW, salePrefix: 'res', connections: CONNECTIONS });
const { newSaleId, loadSale, fresh, rush, snapshot, scanKeys, available, pool, scriptsFor } = lua;

let ctx: TestContext;
let prefix: string;
let redis: Redis;
let scripts: Scripts;
let catalog: SaleCatalog;

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

function expectAccepted(result: Reservation): Accepted {
  if (result.kind !== 'accepted') throw new Error(`expected an accepted order, got ${JSON.stringify(result)}`);
  return result;
}

/** The binding called directly (not through Reservations): the script's own reply, parsed. */
function direct(saleId: string, request: Omit<ReserveRequest, 'saleId'>, now: number): Promise<ReserveOrderReply> {
  const { sku, userId, quantity, idempotencyKey } = request;
  return reserveOrder(scripts, { saleId, sku, userId, shard: 0, orderId: mint(saleId, sku), idempotencyKey }, { quantity, now });
}

/** A new order id for shard 0 of the item (K = 1). */
const mint = (saleId: string, sku = 'phone-x') => mintOrderId(shardKeys(prefix, saleId, sku, 0).tag);
/** Every key of shard 0 of phone-x matching `suffix` (e.g. `idem:*`). */
const shardKeysMatching = (saleId: string, suffix: string) => scanKeys(`${prefix}:{s*}:${saleId}:phone-x:0:${suffix}`);

const orderKeys = (saleId: string) => scanKeys(`${prefix}:{s${tagHex(shardKeys(prefix, saleId, 'phone-x', 0).tag)}}:order:*`);

beforeAll(async () => {
  ({ ctx, prefix, redis, scripts, catalog } = await lua.open());
});

afterAll(() => lua.close());


describe('reserveOrder: an accepted order', () => {
  it('when a listed item is ordered in the sale window, then stock, user quantity, order, deadline, outbox and idempotency key are written together', async () => {
    const saleId = newSaleId('ok');
    await loadSale(saleId);
    const keys = shardZeroKeys(prefix, saleId);

    const result = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 2, idempotencyKey: 'k-1' }, NOW));

    const expiresAt = NOW + PAYMENT_WINDOW_MS;
    const id = result.order.id;
    expect(result).toEqual({
      kind: 'accepted',
      availableAfter: 8,
      delistedNow: false,
      soldOutNow: false,
      order: {
        id,
        saleId,
        sku: 'phone-x',
        shard: 0,
        userId: 'u-1',
        quantity: 2,
        unitPrice: 199_900,
        amount: 399_800,
        status: 'pending_payment',
        idempotencyKey: 'k-1',
        createdAt: NOW,
        expiresAt,
      },
    });
    expect(await redis.hget(keys.item('phone-x'), 'available')).toBe('8');
    expect(await redis.hget(keys.item('phone-x'), 'soldOutAt')).toBeNull();
    expect(await redis.hget(keys.sale, 'ordersAccepted')).toBe('1');
    expect(await redis.hgetall(keys.users('phone-x'))).toEqual({ 'u-1': '2' });
    // The order record and the outbox entry both read back, through the service's own parsers,
    // as the very order the caller was given.
    // The shard is on the Redis record only (Postgres and the outbox entry do not carry it).
    const { shard, ...stored } = result.order;
    expect(await redis.hget(keys.order(id), 'shard')).toBe(String(shard));
    expect(orderFromHash(await redis.hgetall(keys.order(id)))).toMatchObject(stored);
    const outbox = await redis.xrange(keys.outbox, '-', '+');
    expect(outbox).toHaveLength(1);
    expect(parseStreamEntries(saleId, outbox)).toEqual({ entries: [{ streamId: outbox[0]?.[0], order: expect.objectContaining(stored) }], malformed: [] });
    expect(await redis.zrange(keys.deadlines, 0, -1, 'WITHSCORES')).toEqual([id, String(expiresAt)]);
    // The shopper index (the user's own slot, across sales), written right after the reserve.
    expect(await redis.zscore(keys.userOrders('u-1'), id)).toBe(String(NOW));
    const indexTtl = await redis.pttl(keys.userOrders('u-1'));
    expect(indexTtl).toBeGreaterThan(USER_ORDERS_TTL_MS - 60_000);
    expect(indexTtl).toBeLessThanOrEqual(USER_ORDERS_TTL_MS);
    // Records are bounded in memory: they outlive the payment deadline by the retention.
    expect(await redis.pexpiretime(keys.order(id))).toBe(expiresAt + ORDER_RETENTION_MS);
    expect(await redis.get(keys.idempotency('u-1', 'k-1'))).toBe(`${id}|phone-x|2`);
    const ttl = await redis.ttl(keys.idempotency('u-1', 'k-1'));
    expect(ttl).toBeGreaterThan(IDEMPOTENCY_TTL_SECONDS - 60);
    expect(ttl).toBeLessThanOrEqual(IDEMPOTENCY_TTL_SECONDS);
  });

  it('when the order has no idempotency key, then no key record is written and the order carries none', async () => {
    const saleId = newSaleId('keyless');
    await loadSale(saleId);
    const keys = shardZeroKeys(prefix, saleId);

    const result = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW));

    expect(result.order.idempotencyKey).toBeNull();
    expect(await shardKeysMatching(saleId, 'idem:*')).toEqual([]);
    expect(await redis.hget(keys.order(result.order.id), 'idempotencyKey')).toBe('');
    expect(await available(saleId)).toBe(9);
  });

  it('when the sale starts exactly now, then the order is accepted (the window is start-inclusive)', async () => {
    const saleId = newSaleId('start-edge');
    await loadSale(saleId);
    expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, STARTS_AT));
    expect(await available(saleId)).toBe(9);
  });

  it('when the last millisecond before the end is used, then the order is accepted (the window is end-exclusive)', async () => {
    const saleId = newSaleId('end-edge');
    await loadSale(saleId);
    expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, ENDS_AT - 1));
    expect(await available(saleId)).toBe(9);
  });

  it('when the last units are taken, then soldOutNow is reported once and soldOutAt keeps the first sell-out time', async () => {
    const saleId = newSaleId('sold-out-now');
    await loadSale(saleId, [item({ stock: 3 })]);
    const keys = shardZeroKeys(prefix, saleId);

    const first = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW));
    const last = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 2 }, NOW + 5));

    expect([first.soldOutNow, first.availableAfter]).toEqual([false, 2]);
    expect([last.soldOutNow, last.delistedNow, last.availableAfter]).toEqual([true, false, 0]);
    expect(await redis.hget(keys.item('phone-x'), 'soldOutAt')).toBe(String(NOW + 5));

    // Sold out again later (after a restock): the first sell-out time is kept.
    await catalog.restock(saleId, 'phone-x', 1);
    const again = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-3', quantity: 1 }, NOW + 60_000));
    expect(again.soldOutNow).toBe(true);
    expect(await redis.hget(keys.item('phone-x'), 'soldOutAt')).toBe(String(NOW + 5));
  });

  it('when one user reaches exactly the per-user limit, then the order is accepted', async () => {
    const saleId = newSaleId('limit-edge');
    await loadSale(saleId, [item({ perUserLimit: 3 })]);
    expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW));
    expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 2 }, NOW));
    expect(await redis.hget(shardZeroKeys(prefix, saleId).users('phone-x'), 'u-1')).toBe('3');
  });

  it('when the per-user limit is reached on one item, then the same user may still order another item', async () => {
    const saleId = newSaleId('limit-per-item');
    await loadSale(saleId, [item({ perUserLimit: 1 }), item({ sku: 'tv-y', name: 'TV Y', perUserLimit: 1 })]);
    // The shopper index is the user's own (across sales): a user of this test only.
    const userId = `${saleId}-shopper`;
    expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId, quantity: 1 }, NOW));
    expectAccepted(await fresh().reserve({ saleId, sku: 'tv-y', userId, quantity: 1 }, NOW));
    expect(await redis.zcard(shardZeroKeys(prefix, saleId).userOrders(userId))).toBe(2);
  });
});

describe('reserveOrder: refusals', () => {
  interface RefusalCase {
    readonly when: string;
    readonly code: ReserveRefusal;
    /** The script's own answer when it differs from the service's (the service reads the anchor first). */
    readonly raw?: ReserveRefusal;
    readonly detail?: number;
    /** Builds the state; returns the request to refuse and its time. */
    readonly arrange: (saleId: string) => Promise<{ request: Omit<ReserveRequest, 'saleId'>; now: number }>;
  }
  const one = { sku: 'phone-x', userId: 'u-1', quantity: 1 } as const;
  const cases: RefusalCase[] = [
    {
      when: 'the sale was never loaded',
      code: 'SALE_NOT_FOUND',
      arrange: async () => ({ request: one, now: NOW }),
    },
    {
      when: 'the item is not part of the sale (its shard was never loaded)',
      code: 'ITEM_NOT_FOUND',
      raw: 'SALE_NOT_FOUND',
      arrange: async (saleId) => {
        await loadSale(saleId);
        return { request: { ...one, sku: 'ghost' }, now: NOW };
      },
    },
    {
      when: 'the sale starts one millisecond later',
      code: 'SALE_NOT_STARTED',
      arrange: async (saleId) => {
        await loadSale(saleId);
        return { request: one, now: STARTS_AT - 1 };
      },
    },
    {
      when: 'the sale window has ended (now = endsAt)',
      code: 'SALE_ENDED',
      arrange: async (saleId) => {
        await loadSale(saleId);
        return { request: one, now: ENDS_AT };
      },
    },
    {
      when: 'an operator closed the sale inside its window',
      code: 'SALE_ENDED',
      arrange: async (saleId) => {
        await loadSale(saleId);
        expect(await catalog.close(saleId, NOW - 1)).toEqual({ ok: true, closedAt: NOW - 1 });
        return { request: one, now: NOW };
      },
    },
    {
      when: 'an operator delisted the item',
      code: 'ITEM_DELISTED',
      arrange: async (saleId) => {
        await loadSale(saleId);
        expect(await catalog.delist(saleId, 'phone-x', NOW - 1)).toEqual({ ok: true });
        return { request: one, now: NOW };
      },
    },
    {
      when: 'the item was loaded at its low-stock level',
      code: 'ITEM_DELISTED',
      arrange: async (saleId) => {
        await loadSale(saleId, [item({ stock: 5, lowStock: { units: 5 } })]);
        return { request: one, now: NOW };
      },
    },
    {
      when: 'the last unit was already sold',
      code: 'SOLD_OUT',
      arrange: async (saleId) => {
        await loadSale(saleId, [item({ stock: 1 })]);
        expectAccepted(await fresh().reserve({ saleId, ...one, userId: 'u-0' }, NOW));
        return { request: one, now: NOW };
      },
    },
    {
      when: 'the item was loaded with no stock',
      code: 'SOLD_OUT',
      arrange: async (saleId) => {
        await loadSale(saleId, [item({ stock: 0 })]);
        return { request: one, now: NOW };
      },
    },
    {
      when: 'more units are asked for than are left',
      code: 'INSUFFICIENT_STOCK',
      detail: 3,
      arrange: async (saleId) => {
        await loadSale(saleId, [item({ stock: 3, perUserLimit: 10 })]);
        return { request: { ...one, quantity: 4 }, now: NOW };
      },
    },
    {
      when: 'the user already holds the per-user limit',
      code: 'PER_USER_LIMIT_EXCEEDED',
      detail: 2,
      arrange: async (saleId) => {
        await loadSale(saleId, [item({ perUserLimit: 2 })]);
        expectAccepted(await fresh().reserve({ saleId, ...one, quantity: 2 }, NOW));
        return { request: one, now: NOW };
      },
    },
    {
      when: 'one order alone asks for more than the per-user limit',
      code: 'PER_USER_LIMIT_EXCEEDED',
      detail: 0,
      arrange: async (saleId) => {
        await loadSale(saleId, [item({ perUserLimit: 2 })]);
        return { request: { ...one, quantity: 3 }, now: NOW };
      },
    },
    {
      when: 'an idempotency key that made an order comes back with another quantity',
      code: 'IDEMPOTENCY_KEY_REUSED',
      arrange: async (saleId) => {
        await loadSale(saleId);
        expectAccepted(await fresh().reserve({ saleId, ...one, idempotencyKey: 'k-1' }, NOW));
        return { request: { ...one, quantity: 2, idempotencyKey: 'k-1' }, now: NOW + 1 };
      },
    },
  ];

  it.each(cases)('when $when, then $code is returned and nothing is written', async ({ code, raw: rawCode, detail, arrange }) => {
    const saleId = newSaleId(code.toLowerCase());
    const { request, now } = await arrange(saleId);
    const before = await snapshot(saleId);

    const raw = await direct(saleId, request, now);
    const typed = await fresh().reserve({ saleId, ...request }, now);

    expect(raw).toEqual(detail === undefined ? { code: rawCode ?? code } : { code: rawCode ?? code, detail });
    expect(typed).toEqual({ kind: 'refused', code, fromMemory: false });
    expect(await snapshot(saleId)).toEqual(before);
  });

  it('when a request breaks several rules, then the first in the documented order is returned', async () => {
    const saleId = newSaleId('order-of-checks');
    await loadSale(saleId, [item({ sku: 'gone', stock: 0 }), item({ sku: 'few', stock: 2, perUserLimit: 1 })]);
    expect(await catalog.delist(saleId, 'gone', NOW)).toEqual({ ok: true });
    const tooMuch = { sku: 'gone', userId: 'u-1', quantity: 5 } as const;

    expect(await fresh().reserve({ saleId, ...tooMuch, sku: 'ghost' }, STARTS_AT - 1)).toMatchObject({ code: 'ITEM_NOT_FOUND' });
    expect(await direct(saleId, tooMuch, STARTS_AT - 1)).toMatchObject({ code: 'SALE_NOT_STARTED' });
    expect(await direct(saleId, tooMuch, ENDS_AT)).toMatchObject({ code: 'SALE_ENDED' });
    expect(await direct(saleId, tooMuch, NOW)).toMatchObject({ code: 'ITEM_DELISTED' });
    expect(await direct(saleId, { ...tooMuch, sku: 'few', quantity: 3 }, NOW)).toMatchObject({ code: 'INSUFFICIENT_STOCK' });
    expect(await direct(saleId, { ...tooMuch, sku: 'few', quantity: 2 }, NOW)).toMatchObject({ code: 'PER_USER_LIMIT_EXCEEDED' });
  });
});

describe('the shopper index after an accepted order', () => {
  it('when the index cannot be written, then the order still stands (accepted), and the failure is reported', async () => {
    const saleId = newSaleId('index-fails');
    await loadSale(saleId);
    const userId = `${saleId}-shopper`;
    // Not a sorted set: ZADD fails with WRONGTYPE.
    await redis.set(shardZeroKeys(prefix, saleId).userOrders(userId), 'in the way');
    const failed: string[] = [];
    const reservations = new Reservations(scripts, { events: { onIndexWriteFailed: (orderId) => failed.push(orderId) } });

    const result = expectAccepted(await reservations.reserve({ saleId, sku: 'phone-x', userId, quantity: 1 }, NOW));

    expect(failed).toEqual([result.order.id]);
    expect(await redis.hget(shardZeroKeys(prefix, saleId).order(result.order.id), 'userId')).toBe(userId);
    expect(await available(saleId)).toBe(9);
  });
});

describe('reserveOrder: an item in K > 1 stock shards', () => {
  it('when the home shard holds fewer units than asked, then NEED_STOCK names its units, the live quantity and the cap, and nothing but the attempt counter is written', async () => {
    const saleId = newSaleId('need-stock');
    // 3 units over 2 shards: shard 0 has 2, shard 1 has 1.
    await loadSale(saleId, [item({ stock: 3, perUserLimit: 4, stockShards: 2 })]);
    const request = (shard: number, quantity: number, userId = 'u-1') =>
      reserveOrder(scripts, { saleId, sku: 'phone-x', userId, shard, orderId: mintOrderId(shardKeys(prefix, saleId, 'phone-x', shard).tag) }, { quantity, now: NOW, attemptsPerSecond: 10 });
    expect((await request(1, 1)).code).toBe('OK');
    const before = Object.fromEntries(Object.entries(await snapshot(saleId)).filter(([key]) => !key.includes(':attempts:')));

    expect(await request(1, 1)).toEqual({ code: 'NEED_STOCK', available: 0, liveQuantity: 1, perUserLimit: 4 });
    expect(await request(0, 3, 'u-2')).toEqual({ code: 'NEED_STOCK', available: 2, liveQuantity: 0, perUserLimit: 4 });

    expect(Object.fromEntries(Object.entries(await snapshot(saleId)).filter(([key]) => !key.includes(':attempts:')))).toEqual(before);
    // Never SOLD_OUT from a shard: only the item's total can say that. Nor a low-stock delist.
    expect(await lua.itemFields(saleId, 'phone-x', 'soldOutAt', 'delisted')).toEqual([null, '']);
  });
});

describe('reserveOrder: idempotency', () => {
  it('when a key that made an order comes back for another item, then it is another key (keys are scoped to user, sale and SKU)', async () => {
    const saleId = newSaleId('key-per-sku');
    await loadSale(saleId, [item(), item({ sku: 'tv-y', name: 'TV Y' })]);
    const phone = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1, idempotencyKey: 'k-1' }, NOW));
    const tv = expectAccepted(await fresh().reserve({ saleId, sku: 'tv-y', userId: 'u-1', quantity: 1, idempotencyKey: 'k-1' }, NOW + 1));

    expect(tv.order.id).not.toBe(phone.order.id);
    expect(await fresh().reserve({ saleId, sku: 'tv-y', userId: 'u-1', quantity: 1, idempotencyKey: 'k-1' }, NOW + 2)).toEqual({ kind: 'replayed', orderId: tv.order.id });
    expect(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 2, idempotencyKey: 'k-1' }, NOW + 2)).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
  });

  it('when the very same keyless command reaches Redis twice (a client resend), then the second answers REPLAY of the same order and takes nothing', async () => {
    const saleId = newSaleId('resend');
    await loadSale(saleId);
    const keys = { saleId, sku: 'phone-x', userId: 'u-1', shard: 0, orderId: mint(saleId) };
    const first = await reserveOrder(scripts, keys, { quantity: 2, now: NOW });
    expect(first.code).toBe('OK');
    const before = await snapshot(saleId);

    expect(await reserveOrder(scripts, keys, { quantity: 2, now: NOW + 5 })).toEqual({ code: 'REPLAY', orderId: keys.orderId });
    expect(await snapshot(saleId)).toEqual(before);
    expect(await available(saleId)).toBe(8);
  });

  it('when a minted order id already names another order, then ORDER_ID_TAKEN is answered and nothing is written', async () => {
    const saleId = newSaleId('id-taken');
    await loadSale(saleId);
    const orderId = mint(saleId);
    expect((await reserveOrder(scripts, { saleId, sku: 'phone-x', userId: 'u-1', shard: 0, orderId }, { quantity: 1, now: NOW })).code).toBe('OK');
    const before = await snapshot(saleId);

    expect(await reserveOrder(scripts, { saleId, sku: 'phone-x', userId: 'u-2', shard: 0, orderId }, { quantity: 1, now: NOW })).toEqual({ code: 'ORDER_ID_TAKEN' });
    expect(await reserveOrder(scripts, { saleId, sku: 'phone-x', userId: 'u-1', shard: 0, orderId }, { quantity: 3, now: NOW })).toEqual({ code: 'ORDER_ID_TAKEN' });
    expect(await snapshot(saleId)).toEqual(before);
  });

  it('when the same key and body come back, then the first order is named and nothing is written', async () => {
    const saleId = newSaleId('replay');
    await loadSale(saleId);
    const request = { saleId, sku: 'phone-x', userId: 'u-1', quantity: 2, idempotencyKey: 'k-1' };
    const first = expectAccepted(await fresh().reserve(request, NOW));
    const before = await snapshot(saleId);

    const replay = await fresh().reserve(request, NOW + 1_000);
    const raw = await direct(saleId, request, NOW + 2_000);

    expect(replay).toEqual({ kind: 'replayed', orderId: first.order.id });
    expect(raw).toEqual({ code: 'REPLAY', orderId: first.order.id });
    expect(await snapshot(saleId)).toEqual(before);
  });

  it('when the key comes back after the item sold out and the sale closed, then it is still a replay', async () => {
    const saleId = newSaleId('replay-late');
    await loadSale(saleId, [item({ stock: 2 })]);
    const reservations = fresh();
    const request = { saleId, sku: 'phone-x', userId: 'u-1', quantity: 1, idempotencyKey: 'k-1' };
    const first = expectAccepted(await reservations.reserve(request, NOW));
    expectAccepted(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 1 }, NOW));
    await catalog.close(saleId, NOW + 1);

    // This process remembers the item as sold out, yet a keyed request still asks Redis.
    expect(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-3', quantity: 1 }, NOW + 2)).toMatchObject({ fromMemory: true });
    expect(await reservations.reserve(request, NOW + 2)).toEqual({ kind: 'replayed', orderId: first.order.id });
    expect(await direct(saleId, request, ENDS_AT + 1)).toEqual({ code: 'REPLAY', orderId: first.order.id });
  });

  it('when two users send the same key, then each gets an order of their own', async () => {
    const saleId = newSaleId('key-per-user');
    await loadSale(saleId);
    const a = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1, idempotencyKey: 'same' }, NOW));
    const b = expectAccepted(await fresh().reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 1, idempotencyKey: 'same' }, NOW));
    expect(a.order.id).not.toBe(b.order.id);
    expect(await available(saleId)).toBe(8);
  });

  it('when a keyed request was refused, then the same key may be retried, with the same or another body', async () => {
    const saleId = newSaleId('retry-refused');
    await loadSale(saleId, [item({ stock: 3, perUserLimit: 5 })]);
    const request = { saleId, sku: 'phone-x', userId: 'u-1', quantity: 3, idempotencyKey: 'k-1' };

    expect(await fresh().reserve(request, STARTS_AT - 1)).toMatchObject({ kind: 'refused', code: 'SALE_NOT_STARTED' });
    expect(await fresh().reserve({ ...request, quantity: 4 }, NOW)).toMatchObject({ kind: 'refused', code: 'INSUFFICIENT_STOCK' });
    expect(await redis.exists(shardZeroKeys(prefix, saleId).idempotency('u-1', 'k-1'))).toBe(0);

    const accepted = expectAccepted(await fresh().reserve(request, NOW));
    expect(await fresh().reserve(request, NOW + 1)).toEqual({ kind: 'replayed', orderId: accepted.order.id });
    expect(await available(saleId)).toBe(0);
  });

  it('when 20 identical keyed requests race over 8 connections, then exactly one order is made and every reply names it', async () => {
    const saleId = newSaleId('replay-race');
    await loadSale(saleId, [item({ stock: 10 })]);
    const request = { saleId, sku: 'phone-x', userId: 'u-1', quantity: 2, idempotencyKey: 'double-click' };

    const results = await rush(Array.from({ length: 20 }, () => request));

    const accepted = acceptedOf(results);
    expect(accepted).toHaveLength(1);
    const orderId = accepted[0]?.order.id;
    const replays = results.filter((r) => r.kind === 'replayed');
    expect(replays).toHaveLength(19);
    expect(replays.every((r) => r.orderId === orderId)).toBe(true);
    expect(await available(saleId)).toBe(8);
    expect(await redis.xlen(shardZeroKeys(prefix, saleId).outbox)).toBe(1);
    expect(await orderKeys(saleId)).toEqual([shardZeroKeys(prefix, saleId).order(orderId ?? '')]);
    expect(await redis.hget(shardZeroKeys(prefix, saleId).users('phone-x'), 'u-1')).toBe('2');
  });
});

describe('reserveOrder: concurrency', () => {
  it('when 500 users race for 137 units over 8 connections, then exactly 137 sell and stock never goes below zero', async () => {
    const saleId = newSaleId('rush');
    const stock = 137;
    await loadSale(saleId, [item({ stock })]);
    const keys = shardZeroKeys(prefix, saleId);

    // A separate connection watches `available` while the rush runs.
    const watcher = new Redis(ctx.redisUrl);
    const seen: number[] = [];
    let rushing = true;
    const watching = (async () => {
      while (rushing) seen.push(Number(await watcher.hget(keys.item('phone-x'), 'available')));
    })();
    const results = await rush(Array.from({ length: 500 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 })));
    rushing = false;
    await watching;
    await watcher.quit();

    const accepted = acceptedOf(results);
    expect(accepted).toHaveLength(stock);
    // Each accepted order saw a distinct stock level, from 136 down to 0: one decrement at a time.
    expect(accepted.map((r) => r.availableAfter).sort((a, b) => a - b)).toEqual(Array.from({ length: stock }, (_, i) => i));
    expect(accepted.filter((r) => r.soldOutNow)).toHaveLength(1);
    expect(refusalCodes(results)).toEqual(new Set(['SOLD_OUT']));
    expect(seen.length).toBeGreaterThan(0);
    expect(Math.min(...seen)).toBeGreaterThanOrEqual(0);
    expect(await available(saleId)).toBe(0);
    expect(await redis.xlen(keys.outbox)).toBe(stock);
    expect(await orderKeys(saleId)).toHaveLength(stock);
    expect(await redis.zcard(keys.deadlines)).toBe(stock);
    expect(await redis.hget(keys.sale, 'ordersAccepted')).toBe(String(stock));
    expect(await redis.hlen(keys.users('phone-x'))).toBe(stock);
    const outboxIds = (await redis.xrange(keys.outbox, '-', '+')).map(([, fields]) => fields[fields.indexOf('id') + 1]);
    expect(new Set(outboxIds)).toEqual(new Set(accepted.map((r) => r.order.id)));
    const soldOut = accepted.find((r) => r.soldOutNow);
    expect(await redis.hget(keys.item('phone-x'), 'soldOutAt')).toBe(String(soldOut?.order.createdAt));
  });

  it('when 400 users order 1 to 3 units each over 8 connections, then sold units plus what is left equal the stock', async () => {
    const saleId = newSaleId('rush-mixed');
    const stock = 137;
    await loadSale(saleId, [item({ stock })]);
    const keys = shardZeroKeys(prefix, saleId);

    const results = await rush(Array.from({ length: 400 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 + (i % 3) })));

    const accepted = acceptedOf(results);
    const sold = sum(accepted.map((r) => r.order.quantity));
    const left = await available(saleId);
    expect(left).toBeGreaterThanOrEqual(0);
    expect(sold + left).toBe(stock);
    expect(sold).toBeGreaterThan(stock - 3);
    for (const code of refusalCodes(results)) expect(['SOLD_OUT', 'INSUFFICIENT_STOCK']).toContain(code);
    const outbox = await redis.xrange(keys.outbox, '-', '+');
    expect(outbox).toHaveLength(accepted.length);
    expect(sum(outbox.map(([, fields]) => Number(fields[fields.indexOf('quantity') + 1])))).toBe(sold);
    expect(await orderKeys(saleId)).toHaveLength(accepted.length);
  });

  it('when one user fires 20 parallel single-unit attempts over 8 connections against a limit of 2, then exactly 2 units are theirs', async () => {
    const saleId = newSaleId('hoarder');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 2 })]);
    const keys = shardZeroKeys(prefix, saleId);

    const results = await rush(Array.from({ length: 20 }, () => ({ saleId, sku: 'phone-x', userId: 'scalper', quantity: 1 })));

    expect(acceptedOf(results)).toHaveLength(2);
    expect(refusalCodes(results)).toEqual(new Set(['PER_USER_LIMIT_EXCEEDED']));
    expect(await redis.hget(keys.users('phone-x'), 'scalper')).toBe('2');
    expect(await available(saleId)).toBe(98);
    expect(await redis.xlen(keys.outbox)).toBe(2);
    expect(await redis.zcard(keys.userOrders('scalper'))).toBe(2);
  });

  it('when one user fires 20 parallel attempts of 1, 2 and 3 units against a limit of 2, then exactly 2 units are theirs', async () => {
    const saleId = newSaleId('hoarder-mixed');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 2 })]);
    const keys = shardZeroKeys(prefix, saleId);

    const results = await rush(Array.from({ length: 20 }, (_, i) => ({ saleId, sku: 'phone-x', userId: 'scalper', quantity: 1 + (i % 3) })));

    const accepted = acceptedOf(results);
    expect(sum(accepted.map((r) => r.order.quantity))).toBe(2);
    expect(accepted.every((r) => r.order.quantity <= 2)).toBe(true);
    expect(refusalCodes(results)).toEqual(new Set(['PER_USER_LIMIT_EXCEEDED']));
    expect(await redis.hget(keys.users('phone-x'), 'scalper')).toBe('2');
    expect(await available(saleId)).toBe(98);
  });

  it('when 60 users each fire 5 attempts against a limit of 3, then every user holds exactly 3 units', async () => {
    const saleId = newSaleId('many-hoarders');
    await loadSale(saleId, [item({ stock: 1_000, perUserLimit: 3 })]);
    const keys = shardZeroKeys(prefix, saleId);

    const results = await rush(Array.from({ length: 300 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `u-${i % 60}`, quantity: 1 })));

    expect(acceptedOf(results)).toHaveLength(180);
    const live = await redis.hgetall(keys.users('phone-x'));
    expect(Object.keys(live)).toHaveLength(60);
    expect(new Set(Object.values(live))).toEqual(new Set(['3']));
    expect(await available(saleId)).toBe(820);
  });

  it('when 300 users race for stock 100 with a low-stock level of 20 units, then exactly 80 sell and the item is delisted', async () => {
    const saleId = newSaleId('low-units');
    await loadSale(saleId, [item({ stock: 100, lowStock: { units: 20 } })]);
    const keys = shardZeroKeys(prefix, saleId);

    const results = await rush(Array.from({ length: 300 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 })));

    const accepted = acceptedOf(results);
    expect(accepted).toHaveLength(80);
    const delisting = accepted.filter((r) => r.delistedNow);
    expect(delisting).toHaveLength(1);
    expect(delisting[0]?.availableAfter).toBe(20);
    expect(accepted.every((r) => r.availableAfter >= 20)).toBe(true);
    expect(refusalCodes(results)).toEqual(new Set(['ITEM_DELISTED']));
    const state = await redis.hgetall(keys.item('phone-x'));
    expect(state).toMatchObject({ available: '20', total: '100', delisted: 'low_stock', delistedAt: String(delisting[0]?.order.createdAt) });
    expect(state.soldOutAt).toBeUndefined();
    expect(await redis.xlen(keys.outbox)).toBe(80);
    expect(await orderKeys(saleId)).toHaveLength(80);
  });

  it('when 300 users race for stock 120 with a low-stock level of 12.5 percent, then exactly 105 sell and the item is delisted', async () => {
    const saleId = newSaleId('low-pct');
    await loadSale(saleId, [item({ stock: 120, lowStock: { percent: 12.5 } })]);
    const keys = shardZeroKeys(prefix, saleId);

    const results = await rush(Array.from({ length: 300 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 })));

    const accepted = acceptedOf(results);
    expect(accepted).toHaveLength(105);
    const delisting = accepted.filter((r) => r.delistedNow);
    expect(delisting.map((r) => r.availableAfter)).toEqual([15]);
    expect(refusalCodes(results)).toEqual(new Set(['ITEM_DELISTED']));
    expect(await redis.hgetall(keys.item('phone-x'))).toMatchObject({
      available: '15',
      delisted: 'low_stock',
      delistedAt: String(delisting[0]?.order.createdAt),
    });
    expect(await redis.xlen(keys.outbox)).toBe(105);
  });

  it('when orders of 1 to 3 units cross the low-stock level, then the crossing order is the last one accepted', async () => {
    const saleId = newSaleId('low-mixed');
    await loadSale(saleId, [item({ stock: 100, lowStock: { units: 20 } })]);

    const results = await rush(Array.from({ length: 300 }, (_, i) => ({ saleId, sku: 'phone-x', userId: `u-${i}`, quantity: 1 + (i % 3) })));

    const accepted = acceptedOf(results);
    const left = await available(saleId);
    expect(left).toBeGreaterThanOrEqual(18);
    expect(left).toBeLessThanOrEqual(20);
    expect(sum(accepted.map((r) => r.order.quantity))).toBe(100 - left);
    const delisting = accepted.filter((r) => r.delistedNow);
    expect(delisting).toHaveLength(1);
    expect(delisting[0]?.availableAfter).toBe(left);
    expect(accepted.filter((r) => !r.delistedNow).every((r) => r.availableAfter > 20)).toBe(true);
    expect(refusalCodes(results)).toEqual(new Set(['ITEM_DELISTED']));
  });
});

describe('reserveOrder: the attempt limit (RATE_LIMITED)', () => {
  const SECOND = Math.floor(NOW / 1000);
  /** The sale's state without its attempt counters: what a refused attempt must leave alone. */
  const withoutCounters = async (saleId: string) =>
    Object.fromEntries(Object.entries(await snapshot(saleId)).filter(([key]) => !key.includes(':attempts:')));
  const limited = (saleId: string, userId: string, now: number, limit: number, sku = 'phone-x') =>
    reserveOrder(scripts, { saleId, sku, userId, shard: 0, orderId: mint(saleId, sku) }, { quantity: 1, now, attemptsPerSecond: limit });

  it('when a user makes more attempts in one second than the limit, then the extra ones are refused RATE_LIMITED and write nothing but the counter', async () => {
    const saleId = newSaleId('attempts');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 100 })]);
    const keys = shardZeroKeys(prefix, saleId);

    const counter = keys.attempts('eager', SECOND);
    expect((await limited(saleId, 'eager', NOW, 3)).code).toBe('OK');
    // Opened at the start of its second: it outlives the second by one more, no longer.
    const ttl = await redis.pttl(counter);
    expect(ttl).toBeGreaterThan(1_000);
    expect(ttl).toBeLessThanOrEqual(2_000);
    // Those 2 s are real time; the snapshots below SCAN a Redis shared with every other test file
    // and once took longer on a loaded CI machine. The counter is kept alive for the rest of the test.
    await redis.pexpire(counter, 60_000);
    for (let i = 1; i < 3; i++) expect((await limited(saleId, 'eager', NOW + i, 3)).code).toBe('OK');
    const before = await withoutCounters(saleId);
    expect(await limited(saleId, 'eager', NOW + 500, 3)).toEqual({ code: 'RATE_LIMITED' });
    expect(await limited(saleId, 'eager', NOW + 999, 3)).toEqual({ code: 'RATE_LIMITED' });

    expect(await withoutCounters(saleId)).toEqual(before);
    expect(await available(saleId)).toBe(97);
    expect(await redis.xlen(keys.outbox)).toBe(3);
    expect(await redis.get(counter)).toBe('5');
  });

  it('when the next second starts, then the user may attempt again; another user or another item has a count of its own', async () => {
    const saleId = newSaleId('attempts-window');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 100 }), item({ sku: 'tv-y', name: 'TV Y' })]);

    expect((await limited(saleId, 'eager', NOW, 1)).code).toBe('OK');
    expect((await limited(saleId, 'eager', NOW + 999, 1)).code).toBe('RATE_LIMITED');
    expect((await limited(saleId, 'calm', NOW + 999, 1)).code).toBe('OK');
    expect((await limited(saleId, 'eager', NOW + 999, 1, 'tv-y')).code).toBe('OK');
    expect((await limited(saleId, 'eager', NOW + 1_000, 1)).code).toBe('OK');
    expect(await available(saleId)).toBe(97);
  });

  it('when the limit is 0, then the script writes no counter at all', async () => {
    const saleId = newSaleId('attempts-off');
    await loadSale(saleId);
    for (let i = 0; i < 3; i++) expect((await limited(saleId, 'u-1', NOW, 0)).code).toBe('OK');
    expect(await shardKeysMatching(saleId, 'attempts:*')).toEqual([]);
  });

  it('when one user fires 30 attempts at once over 8 connections, each with its own process memory, against a limit of 4, then exactly 4 are decided and the rest take nothing', async () => {
    const saleId = newSaleId('attempts-race');
    await loadSale(saleId, [item({ stock: 100, perUserLimit: 100 })]);
    const keys = shardZeroKeys(prefix, saleId);
    const processes = pool.map((client) => new Reservations(scriptsFor(client), { closedItems: new ClosedItems(), attempts: new AttemptWindow(4) }));

    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => processes[i % processes.length]!.reserve({ saleId, sku: 'phone-x', userId: 'scalper', quantity: 1 }, NOW + i)),
    );

    expect(acceptedOf(results)).toHaveLength(4);
    expect(refusalCodes(results)).toEqual(new Set(['RATE_LIMITED']));
    expect(await available(saleId)).toBe(96);
    expect(await redis.hget(keys.users('phone-x'), 'scalper')).toBe('4');
    expect(await redis.xlen(keys.outbox)).toBe(4);
  });

  it('when an item is known sold out, then attempts past the limit are refused RATE_LIMITED from memory without a single Redis command', async () => {
    const saleId = newSaleId('attempts-memory');
    await loadSale(saleId, [item({ stock: 1 })]);
    const reservations = new Reservations(scripts, { closedItems: new ClosedItems(), attempts: new AttemptWindow(3) });
    const attempt = (userId: string, now: number) => reservations.reserve({ saleId, sku: 'phone-x', userId, quantity: 1 }, now);
    expect(expectAccepted(await attempt('u-1', NOW)).soldOutNow).toBe(true);

    const monitor = await monitorRedis(ctx.redisUrl, saleId);
    try {
      const answers = [];
      for (let i = 0; i < 6; i++) answers.push(await attempt('u-2', NOW + 10 + i));
      const marker = `${prefix}:{${saleId}}:marker`;
      await monitor.drain(marker);

      expect(answers.slice(0, 3)).toEqual(Array(3).fill({ kind: 'refused', code: 'SOLD_OUT', fromMemory: true }));
      expect(answers.slice(3)).toEqual(Array(3).fill({ kind: 'refused', code: 'RATE_LIMITED', fromMemory: true }));
      expect(monitor.lines.filter((line) => !line.includes(marker))).toEqual([]);
    } finally {
      await monitor.close();
    }
  });
});

describe('reserveOrder: script cache and the in-process fast path', () => {
  it('when Redis has flushed its script cache, then the next call still works (EVALSHA falls back to EVAL)', async () => {
    const saleId = newSaleId('flush');
    await loadSale(saleId);
    const lua = scriptSource('reserveOrder');
    const sha = createHash('sha1').update(lua).digest('hex');
    const reservations = fresh();
    expectAccepted(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW));

    // In one MULTI, so no other test file can reload the script in between.
    const flushed = await redis.multi().script('FLUSH').script('EXISTS', sha).exec();
    expect(flushed?.[1]?.[1]).toEqual([0]);

    expectAccepted(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 1 }, NOW));
    expect(await available(saleId)).toBe(8);
    expect(await redis.script('EXISTS', sha)).toEqual([1]);
  });

  it('when an item sold out, then a keyless attempt is refused from memory until the item is reopened', async () => {
    const saleId = newSaleId('fast-path');
    await loadSale(saleId, [item({ stock: 1 })]);
    const reservations = fresh();
    const attempt = (userId: string, now = NOW) => reservations.reserve({ saleId, sku: 'phone-x', userId, quantity: 1 }, now);

    expect(expectAccepted(await attempt('u-1')).soldOutNow).toBe(true);
    expect(await attempt('u-2')).toEqual({ kind: 'refused', code: 'SOLD_OUT', fromMemory: true });

    // Stock comes back behind this process's back (the script alone, no announcement):
    // memory still answers, which shows no round trip was made.
    await restockItem(scripts, { saleId, sku: 'phone-x' }, { quantity: 1 });
    expect(await attempt('u-2')).toEqual({ kind: 'refused', code: 'SOLD_OUT', fromMemory: true });
    expect(await available(saleId)).toBe(1);

    reservations.closedItems.reopen(saleId, 'phone-x');
    expect(expectAccepted(await attempt('u-2')).order.userId).toBe('u-2');
    expect(await available(saleId)).toBe(0);
  });

  it('when Redis itself answers SOLD_OUT, then the next keyless attempt is answered from memory', async () => {
    const saleId = newSaleId('fast-path-refusal');
    await loadSale(saleId, [item({ stock: 0 })]);
    const reservations = fresh();
    const request = { saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 };

    expect(await reservations.reserve(request, NOW)).toEqual({ kind: 'refused', code: 'SOLD_OUT', fromMemory: false });
    expect(await reservations.reserve(request, NOW)).toEqual({ kind: 'refused', code: 'SOLD_OUT', fromMemory: true });
    reservations.closedItems.reopen(saleId, 'phone-x');
    expect(await reservations.reserve(request, NOW)).toEqual({ kind: 'refused', code: 'SOLD_OUT', fromMemory: false });
  });

  it('when the memory of a sold-out item is older than its TTL, then Redis is asked again', async () => {
    const saleId = newSaleId('fast-path-ttl');
    await loadSale(saleId, [item({ stock: 0 })]);
    const reservations = fresh();
    const request = { saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 };

    expect(await reservations.reserve(request, NOW)).toMatchObject({ fromMemory: false });
    expect(await reservations.reserve(request, NOW + 999)).toMatchObject({ fromMemory: true });
    expect(await reservations.reserve(request, NOW + 1_000)).toMatchObject({ code: 'SOLD_OUT', fromMemory: false });
  });

  it('when an order delists the item at its low-stock level, then the next keyless attempt is refused from memory as delisted', async () => {
    const saleId = newSaleId('fast-path-delist');
    await loadSale(saleId, [item({ stock: 3, lowStock: { units: 2 } })]);
    const reservations = fresh();

    expect(expectAccepted(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-1', quantity: 1 }, NOW)).delistedNow).toBe(true);
    expect(await reservations.reserve({ saleId, sku: 'phone-x', userId: 'u-2', quantity: 1 }, NOW)).toEqual({
      kind: 'refused',
      code: 'ITEM_DELISTED',
      fromMemory: true,
    });
    expect(await available(saleId)).toBe(2);
  });

  it('when the sale has ended, then each item asks Redis once and is then refused from memory, and a made-up SKU is not found', async () => {
    const saleId = newSaleId('fast-path-ended');
    await loadSale(saleId, [item(), item({ sku: 'tv-y', name: 'TV Y' })]);
    const reservations = fresh();
    const attempt = (sku: string) => reservations.reserve({ saleId, sku, userId: 'u-1', quantity: 1 }, ENDS_AT);

    expect(await attempt('phone-x')).toEqual({ kind: 'refused', code: 'SALE_ENDED', fromMemory: false });
    expect(await attempt('phone-x')).toEqual({ kind: 'refused', code: 'SALE_ENDED', fromMemory: true });
    // Only Redis knows which SKUs exist: the end is remembered per item, never for the whole sale.
    expect(await attempt('tv-y')).toEqual({ kind: 'refused', code: 'SALE_ENDED', fromMemory: false });
    expect(await attempt('made-up')).toEqual({ kind: 'refused', code: 'ITEM_NOT_FOUND', fromMemory: false });
  });
});
