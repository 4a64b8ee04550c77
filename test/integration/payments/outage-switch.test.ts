// The payment-outage switch on its own (src/orders/payment-outage.ts), on real Redis and shard
// keys: when an outage ends, exactly the pending orders whose deadline fell during it move on by
// its length — record, deadlines, the record's life and a new outbox entry — and no other; ending
// again moves nothing; an end interrupted half-way keeps expiry paused and is finished by the next.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { PaymentOutage, type OutageEvents } from '../../../src/orders/payment-outage.ts';
import { shardKeys, type ShardRef } from '../../../src/stock/keys.ts';
import { mintOrderId } from '../../../src/stock/order-id.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';

let ctx: TestContext;
let redis: Redis;

beforeAll(async () => {
  ctx = await createTestContext();
  redis = new Redis(ctx.redisUrl);
});

afterAll(async () => {
  redis.disconnect();
  await ctx.cleanup();
});

const quiet: OutageEvents = { onChanged: () => undefined, onStretched: () => undefined };

let sales = 0;
function shardOf(): ShardRef {
  return { saleId: `outage-${++sales}`, sku: 'a', shard: 0, shards: 1 };
}

/** A pending (or other) order record as reserveOrder leaves it, with its deadline and TTL. */
async function putOrder(ref: ShardRef, expiresAt: number, status = 'pending_payment'): Promise<string> {
  const keys = shardKeys(ctx.prefix, ref.saleId, ref.sku, ref.shard);
  const id = mintOrderId(keys.tag);
  await redis.hset(keys.order(id), { id, saleId: ref.saleId, sku: ref.sku, shard: ref.shard, userId: 'u', quantity: 1, unitPrice: 5, amount: 5, status, createdAt: expiresAt - 1000, expiresAt, idempotencyKey: '' });
  await redis.pexpireat(keys.order(id), expiresAt + 3_600_000);
  if (status === 'pending_payment') await redis.zadd(keys.deadlines, expiresAt, id);
  return id;
}

async function recordOf(ref: ShardRef, id: string) {
  const keys = shardKeys(ctx.prefix, ref.saleId, ref.sku, ref.shard);
  return {
    expiresAt: Number(await redis.hget(keys.order(id), 'expiresAt')),
    deadline: await redis.zscore(keys.deadlines, id),
    ttlEndsAt: Date.now() + (await redis.pttl(keys.order(id))),
  };
}

describe('payment outage switch', () => {
  it('when an outage ends, then only pending orders due during it move on by its length, once', async () => {
    const ref = shardOf();
    const keys = shardKeys(ctx.prefix, ref.saleId, ref.sku, ref.shard);
    const t0 = Date.now() + 60_000; // the outage: [t0, t0 + 30 s)
    const length = 30_000;
    const before = await putOrder(ref, t0 - 1);
    const atStart = await putOrder(ref, t0);
    const during = await putOrder(ref, t0 + 12_345);
    const atEnd = await putOrder(ref, t0 + length);
    const paid = await putOrder(ref, t0 + 5_000, 'paid');
    const stretched: number[] = [];
    const outage = new PaymentOutage(redis, ctx.prefix, async () => [ref], { ...quiet, onStretched: (n) => stretched.push(n) }, createLogger(ctx.config));

    expect(await outage.paused()).toBe(false);
    expect(await outage.start(t0)).toEqual({ state: 'active', startedAt: t0 });
    expect(await outage.start(t0 + 10)).toEqual({ state: 'active', startedAt: t0 }); // already on: same start
    expect(await outage.paused()).toBe(true);
    const ttlBefore = (await recordOf(ref, during)).ttlEndsAt;

    expect(await outage.end(t0 + length)).toEqual({ state: 'ending', startedAt: t0, endedAt: t0 + length, stretched: 2 });
    expect(await outage.paused()).toBe(false);
    expect(stretched).toEqual([2]);

    for (const [id, due] of [[atStart, t0 + length], [during, t0 + 12_345 + length]] as const) {
      expect(await recordOf(ref, id)).toMatchObject({ expiresAt: due, deadline: String(due) });
    }
    expect((await recordOf(ref, during)).ttlEndsAt - ttlBefore).toBeGreaterThanOrEqual(length - 1_000);
    for (const [id, due] of [[before, t0 - 1], [atEnd, t0 + length]] as const) {
      expect(await recordOf(ref, id)).toMatchObject({ expiresAt: due, deadline: String(due) });
    }
    expect(Number(await redis.hget(keys.order(paid), 'expiresAt'))).toBe(t0 + 5_000);
    // The moved states are on the outbox, so Postgres's expires_at follows.
    const entries = (await redis.xrange(keys.outbox, '-', '+')) as [string, string[]][];
    const moved = entries.map(([, fields]) => Object.fromEntries(fields.reduce<string[][]>((pairs, v, i) => (i % 2 ? pairs : [...pairs, [v, fields[i + 1]!]]), [])));
    expect(moved.map((entry) => [entry.id, Number(entry.expiresAt), entry.status]).sort()).toEqual(
      [[atStart, t0 + length, 'pending_payment'], [during, t0 + 12_345 + length, 'pending_payment']].sort(),
    );

    // Ending again (a retried request) moves nothing.
    expect(await outage.end(t0 + length + 5)).toEqual({ state: 'none', stretched: 0 });
    expect((await recordOf(ref, during)).expiresAt).toBe(t0 + 12_345 + length);
  });

  it('when an end is interrupted half-way, then expiry stays paused and the next end finishes it without moving anything twice', async () => {
    const ref = shardOf();
    const t0 = Date.now() + 60_000;
    const ids = await Promise.all(Array.from({ length: 450 }, (_, i) => putOrder(ref, t0 + i)));
    let failNext = true;
    const outage = new PaymentOutage(
      redis,
      ctx.prefix,
      async () => {
        if (failNext) {
          failNext = false;
          throw new Error('worker died mid-end');
        }
        return [ref];
      },
      quiet,
      createLogger(ctx.config),
    );
    await outage.start(t0);
    await expect(outage.end(t0 + 1_000)).rejects.toThrow(/mid-end/);
    expect(await outage.status()).toEqual({ state: 'ending', startedAt: t0, endedAt: t0 + 1_000 });
    expect(await outage.paused()).toBe(true);
    // A new start must finish the old end first, then start afresh.
    const restarted = await outage.start(t0 + 2_000);
    expect(restarted).toEqual({ state: 'active', startedAt: t0 + 2_000 });
    for (const [i, id] of ids.entries()) expect((await recordOf(ref, id)).expiresAt).toBe(t0 + i + 1_000);
    const ended = await outage.end(t0 + 3_000);
    // Moved to [t0 + 1000, t0 + 1450): none fell during the second outage [t0 + 2000, t0 + 3000).
    expect(ended.stretched).toBe(0);
    for (const [i, id] of ids.entries()) expect((await recordOf(ref, id)).expiresAt).toBe(t0 + i + 1_000);
  });
});
