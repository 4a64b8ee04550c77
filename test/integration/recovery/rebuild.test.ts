// The rebuild from Postgres (src/recovery/rebuild.ts) against real Redis and Postgres: what a lost
// sale's shards, records, deadlines, keys and anchor are rebuilt with; a partial loss; orders still
// in an outbox; two racing rebuilds; a stale read that must not overwrite a whole shard; a layout-1
// sale migrated.
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { OUTBOX_GROUP } from '../../../src/orders/outbox-persister.ts';
import { SaleRebuilder } from '../../../src/recovery/rebuild.ts';
import { SaleRepository } from '../../../src/sales/repository.ts';
import { anchorKey, encodeKeyPart, orderKeyOf, userOrdersKey } from '../../../src/stock/keys.ts';
import { deleteServiceKeys } from '../../../tools/redis-keys.ts';
import pg from 'pg';
import { order, saleDefinition, shardOf, takeAwayKeys, useRecoveryFixture } from './fixture.ts';

const env = useRecoveryFixture();

/** A sale mid-rush as Postgres records it: restocked, orders in every status, a key, an overdue pending order. */
async function midRush() {
  const sale = saleDefinition([
    { sku: 'phone', stock: 10, perUserLimit: 3 },
    { sku: 'case', stock: 5, perUserLimit: 2, lowStock: { units: 2 } },
  ]);
  const orders = await env.fx.record(sale, [
    { sku: 'phone', userId: 'u1', quantity: 3 },
    { sku: 'phone', userId: 'u2', quantity: 2, status: 'paid', idempotencyKey: 'k-2' },
    { sku: 'phone', userId: 'u3', quantity: 1, status: 'cancelled' },
    { sku: 'phone', userId: 'u4', quantity: 1, expiresAt: Date.now() - 5_000 },
    { sku: 'phone', userId: 'u5', quantity: 1, idempotencyKey: 'k-5' },
    { sku: 'case', userId: 'u1', quantity: 2, status: 'paid' },
    { sku: 'case', userId: 'u2', quantity: 1 },
  ]);
  expect(await env.fx.repository.addRestock(sale.id, 'phone', 4)).toBe(true);
  return { sale, orders };
}

describe('a sale lost whole', () => {
  it('comes back with its window, stock, allowances, pending orders, deadlines, keys and group, anchor last', async () => {
    const { sale, orders } = await midRush();
    const outcome = await env.fx.rebuilder.rebuild(sale.id);
    expect(outcome).toMatchObject({ kind: 'rebuilt', shards: 2, anchor: true, liveOrders: 6, pendingOrders: 4, migrated: false });

    expect(await env.redis.hgetall(anchorKey(env.ctx.prefix, sale.id))).toEqual({
      startsAt: String(sale.startsAt),
      endsAt: String(sale.endsAt),
      paymentWindowMs: '900000',
      closedAt: '',
      layout: '2',
      [`shards:${encodeKeyPart('phone')}`]: '1',
      [`shards:${encodeKeyPart('case')}`]: '1',
    });
    const phone = shardOf(env.redis, env.ctx.prefix, sale.id, 'phone');
    // 10 + 4 restocked − (3 + 2 + 1 + 1) live; the cancelled unit is back.
    expect(await phone.item()).toMatchObject({ sku: 'phone', shard: '0', shards: '1', available: '7', total: '14', perUserLimit: '3', unitPrice: '1000', delisted: '', outPending: '0' });
    expect(await phone.users()).toEqual({ u1: '3', u2: '2', u4: '1', u5: '1' });
    expect(await phone.sale()).toMatchObject({ startsAt: String(sale.startsAt), closedAt: '', ordersAccepted: '5' });
    // case: 5 − 3 live = 2, at its level of 2 units: the rule delists it, as loading it would.
    expect(await shardOf(env.redis, env.ctx.prefix, sale.id, 'case').item()).toMatchObject({ available: '2', total: '5', lowUnits: '2', delisted: 'low_stock' });

    const pending = orders.filter((o) => o.status === 'pending_payment');
    expect((await phone.deadlines()).sort()).toEqual(pending.filter((o) => o.sku === 'phone').map((o) => o.id).sort());
    for (const o of pending) {
      const record = await env.redis.hgetall(orderKeyOf(env.ctx.prefix, o.id)!);
      expect(record).toMatchObject({ id: o.id, saleId: sale.id, sku: o.sku, shard: '0', userId: o.userId, status: 'pending_payment', quantity: String(o.quantity), expiresAt: String(o.expiresAt) });
      expect(await env.redis.pttl(orderKeyOf(env.ctx.prefix, o.id)!)).toBeGreaterThan(0);
    }
    // Paid orders need no record (Postgres answers for them); their keys still replay.
    const paid = orders.find((o) => o.userId === 'u2' && o.sku === 'phone')!;
    expect(await env.redis.exists(orderKeyOf(env.ctx.prefix, paid.id)!)).toBe(0);
    expect(await env.redis.get(phone.keys.idempotency('u2', 'k-2'))).toBe(`${paid.id}|phone|2`);
    expect(await env.redis.ttl(phone.keys.idempotency('u2', 'k-2'))).toBeGreaterThan(24 * 3600 - 60);
    const u5 = orders.find((o) => o.userId === 'u5')!;
    expect(await env.redis.get(phone.keys.idempotency('u5', 'k-5'))).toBe(`${u5.id}|phone|1`);
    expect(await env.redis.zrange(userOrdersKey(env.ctx.prefix, 'u1'), 0, -1)).toHaveLength(2);
    const groups = (await env.redis.xinfo('GROUPS', phone.keys.outbox)) as unknown[][];
    expect(groups.map((group) => group[1])).toEqual([OUTBOX_GROUP]);

    expect(await env.fx.rebuilder.rebuild(sale.id)).toEqual({ kind: 'intact' });
  });

  it('keeps an operator delist and a close; an unknown sale is unknown', async () => {
    const sale = saleDefinition([{ sku: 'a' }, { sku: 'b', lowStock: { units: 8 } }]);
    await env.fx.record(sale, [{ sku: 'b', userId: 'u1', quantity: 3 }]);
    await env.fx.repository.recordListing(sale.id, 'a', 'delisted', 1_700_000_000_000);
    await env.fx.repository.recordListing(sale.id, 'b', 'relisted', 1_700_000_000_000);
    await env.fx.repository.markClosed(sale.id, 1_700_000_123_456);
    await env.fx.rebuilder.rebuild(sale.id);
    expect(await shardOf(env.redis, env.ctx.prefix, sale.id, 'a').item()).toMatchObject({ delisted: 'operator', delistedAt: '1700000000000' });
    // Relisted below its level by the operator: listed, as the operator left it.
    expect(await shardOf(env.redis, env.ctx.prefix, sale.id, 'b').item()).toMatchObject({ available: '7', delisted: '' });
    expect(await shardOf(env.redis, env.ctx.prefix, sale.id, 'b').sale()).toMatchObject({ closedAt: '1700000123456' });
    expect(await env.redis.hget(anchorKey(env.ctx.prefix, sale.id), 'closedAt')).toBe('1700000123456');
    expect(await env.fx.rebuilder.rebuild('no-such-sale')).toEqual({ kind: 'unknown' });
  });
});

describe('a large sale', () => {
  it('is written whole: thousands of shoppers, pending orders and keys (more than one chunk of each)', async () => {
    const sale = saleDefinition([{ sku: 'phone', stock: 10_000, perUserLimit: 2 }]);
    const shoppers = Array.from({ length: 2_500 }, (_, i) => ({ sku: 'phone', userId: `s${i}`, quantity: 1 + (i % 2), idempotencyKey: `key-${i}` }));
    await env.fx.record(sale, shoppers);
    const outcome = await env.fx.rebuilder.rebuild(sale.id);
    expect(outcome).toMatchObject({ kind: 'rebuilt', liveOrders: 2_500, pendingOrders: 2_500 });
    const phone = shardOf(env.redis, env.ctx.prefix, sale.id, 'phone');
    expect(await phone.item()).toMatchObject({ available: String(10_000 - 3_750) });
    expect(await env.redis.hlen(phone.keys.users)).toBe(2_500);
    expect(await env.redis.hget(phone.keys.users, 's2499')).toBe('2');
    expect(await env.redis.zcard(phone.keys.deadlines)).toBe(2_500);
    expect(await env.redis.exists(phone.keys.idempotency('s1234', 'key-1234'))).toBe(1);
  });
});

describe('a sale lost in part', () => {
  it('rewrites only the missing shard, counting the orders its surviving outbox still holds', async () => {
    const { sale } = await midRush();
    await env.fx.rebuilder.rebuild(sale.id);
    const phone = shardOf(env.redis, env.ctx.prefix, sale.id, 'phone');
    const kase = shardOf(env.redis, env.ctx.prefix, sale.id, 'case');
    // An order Redis accepted that has not reached Postgres yet: in the outbox, stock already taken.
    const waiting = order(sale, { sku: 'phone', userId: 'u9', quantity: 2 });
    await env.redis.xadd(phone.keys.outbox, '*', ...Object.entries({ ...waiting, idempotencyKey: '' }).flatMap(([field, value]) => [field, String(value)]));
    await env.redis.hset(kase.keys.item, 'available', '1');
    await env.redis.del(phone.keys.item);

    const outcome = await env.fx.rebuilder.rebuild(sale.id);
    expect(outcome).toMatchObject({ kind: 'rebuilt', shards: 1, anchor: false });
    expect(await phone.item()).toMatchObject({ available: '5' });
    expect(await phone.users()).toMatchObject({ u9: '2', u1: '3' });
    expect(await phone.deadlines()).toContain(waiting.id);
    // The surviving shard is the truth: left as it was.
    expect(await kase.item()).toMatchObject({ available: '1' });
    expect(await env.redis.xlen(phone.keys.outbox)).toBe(1);
  });
});

describe('two processes racing', () => {
  it('rebuild once: the second finds the sale whole and writes nothing', async () => {
    const { sale } = await midRush();
    const logger = createLogger({ logLevel: 'silent' });
    const others = [new pg.Pool({ connectionString: env.ctx.databaseUrl, max: 2 }), new pg.Pool({ connectionString: env.ctx.databaseUrl, max: 2 })];
    const clients = [new Redis(env.ctx.redisUrl), new Redis(env.ctx.redisUrl)];
    try {
      const rebuilders = others.map((pool, i) => new SaleRebuilder(clients[i]!, env.ctx.prefix, pool, new SaleRepository(pool), logger));
      for (let round = 0; round < 3; round++) {
        await deleteServiceKeys(env.ctx.redisUrl, `${env.ctx.prefix}`);
        const outcomes = await Promise.all(rebuilders.map((rebuilder) => rebuilder.rebuild(sale.id)));
        expect(outcomes.map((outcome) => outcome.kind).sort()).toEqual(['intact', 'rebuilt']);
        expect(await shardOf(env.redis, env.ctx.prefix, sale.id, 'phone').item()).toMatchObject({ available: '7' });
        expect(await shardOf(env.redis, env.ctx.prefix, sale.id, 'phone').users()).toEqual({ u1: '3', u2: '2', u4: '1', u5: '1' });
      }
    } finally {
      clients.forEach((client) => client.disconnect());
      await Promise.all(others.map((pool) => pool.end()));
    }
  });
});

describe('a stale read', () => {
  // A Cluster failover: the rebuild read the sale from a master that restarted empty, and writes
  // after the slots have moved to the promoted replica, which holds the sale whole — with a
  // decision Postgres does not have yet. Here: the rebuild reads Redis with the sale gone, is held
  // on Postgres (the orders table locked) while the sale comes back whole, then goes on.
  it('writes nothing over a shard or an anchor it finds whole when it writes', async () => {
    const { sale } = await midRush();
    await env.fx.rebuilder.rebuild(sale.id);
    const phone = shardOf(env.redis, env.ctx.prefix, sale.id, 'phone');
    await env.redis.hincrby(phone.keys.item, 'available', -1);
    await env.redis.hset(anchorKey(env.ctx.prefix, sale.id), 'closedAt', '1');
    const live = async () => ({ item: await phone.item(), users: await phone.users(), anchor: await env.redis.hgetall(anchorKey(env.ctx.prefix, sale.id)) });
    const before = await live();

    const locker = await env.fx.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE orders IN ACCESS EXCLUSIVE MODE');
      const lockerPid = (await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const putBack = await takeAwayKeys(env.redis, env.ctx.prefix);
      const rebuilding = env.fx.rebuilder.rebuild(sale.id);
      // Held reading the orders (blocked by the locker): it has looked at Redis, and found the sale missing, by now.
      await expect
        .poll(async () => (await env.fx.pool.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [lockerPid])).rows[0].n, { timeout: 5_000 })
        .toBe(1);
      await putBack();
      await locker.query('COMMIT');
      expect(await rebuilding).toEqual({ kind: 'intact' });
    } finally {
      locker.release();
    }
    expect(await live()).toEqual(before);
    expect(before.item.available).toBe('6');
  });
});

describe('a layout-1 sale', () => {
  it('is migrated: rebuilt on layout 2, its unpersisted outbox entries moved to their shard, its old keys gone', async () => {
    const sale = saleDefinition([{ sku: 'phone', stock: 10 }]);
    await env.fx.record(sale, [{ sku: 'phone', userId: 'u1', quantity: 2 }]);
    const base = `${env.ctx.prefix}:{${sale.id}}`;
    await env.redis.hset(`${base}:sale`, { startsAt: sale.startsAt, endsAt: sale.endsAt, paymentWindowMs: 900000, closedAt: '' });
    await env.redis.hset(`${base}:item:phone`, { available: 7, total: 10 });
    await env.redis.hset(`${base}:users:phone`, { u1: 2, u2: 1 });
    const unpersisted = { ...order(sale, { sku: 'phone', userId: 'u2', quantity: 1 }), idempotencyKey: '' };
    await env.redis.xadd(`${base}:outbox`, '*', ...Object.entries(unpersisted).flatMap(([field, value]) => [field, String(value)]));

    expect(await env.fx.rebuilder.rebuild(sale.id)).toMatchObject({ kind: 'rebuilt', migrated: true });
    const phone = shardOf(env.redis, env.ctx.prefix, sale.id, 'phone');
    expect(await phone.item()).toMatchObject({ available: '7' });
    expect(await phone.users()).toEqual({ u1: '2', u2: '1' });
    const moved = await env.redis.xrange(phone.keys.outbox, '-', '+');
    expect(moved.map(([, fields]) => fields[fields.indexOf('id') + 1])).toEqual([unpersisted.id]);
    expect(await env.redis.exists(`${base}:item:phone`, `${base}:users:phone`, `${base}:outbox`)).toBe(0);
    expect(await env.redis.hget(anchorKey(env.ctx.prefix, sale.id), 'layout')).toBe('2');
  });
});
