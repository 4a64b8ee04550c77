// Persistence per shard: the persister reads every stock shard's own outbox stream, a batch
// Postgres refuses goes to the queue of its shard's partition, and persisters share the
// partitions out through leases: two persisters hold disjoint halves, each reads only its own
// partitions' streams, and when one dies (stops renewing) the other takes its partitions over
// within the lease time and persists what was left. Idle streams are polled less and less often.
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OUTBOX_GROUP } from '../../../src/orders/outbox-persister.ts';
import { partitionOf, type OutboxStream } from '../../../src/orders/outbox-streams.ts';
import { leaseKey } from '../../../src/orders/partition-leases.ts';
import { shardKeys } from '../../../src/stock/keys.ts';
import { mintOrderId } from '../../../src/stock/order-id.ts';
import type { Redis } from 'ioredis';
import { monitorRedis } from '../../support/monitor.ts';
import { persisterFixture, type PersisterFixture } from '../../support/persister.ts';
import type { TestContext } from '../../support/context.ts';

const fixture = persisterFixture(600);
const { api } = fixture;

let ctx: TestContext;
let db: pg.Client;
let redis: Redis;
let persisters: PersisterFixture;

beforeAll(async () => {
  persisters = await fixture.open();
  ({ ctx, db, redis } = persisters);
});

afterAll(() => fixture.close());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Shard extends OutboxStream {
  readonly sku: string;
}

/** The streams of `shards` shards of each SKU (what outboxStreamsOf gives for stockShards = shards). */
function shardStreams(saleId: string, skus: readonly string[], shards: number): Shard[] {
  return skus.flatMap((sku) =>
    Array.from({ length: shards }, (_, k) => {
      const keys = shardKeys(ctx.prefix, saleId, sku, k);
      return { key: keys.outbox, saleId, tag: keys.tag, sku };
    }),
  );
}

/** Appends `n` new pending orders of one unit to the shard's stream, as reserveOrder does; their ids. */
async function addOrders(shard: Shard, n: number, user: string): Promise<string[]> {
  const now = Date.now();
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = mintOrderId(shard.tag);
    ids.push(id);
    await redis.xadd(shard.key, '*', 'id', id, 'sku', shard.sku, 'userId', `${user}-${i}`, 'quantity', '1', 'unitPrice', '100', 'amount', '100',
      'status', 'pending_payment', 'createdAt', String(now), 'expiresAt', String(now + 900_000), 'idempotencyKey', '');
  }
  return ids;
}

async function rowsOf(saleId: string): Promise<string[]> {
  return (await db.query<{ id: string }>('SELECT id FROM orders WHERE sale_id = $1 ORDER BY id', [saleId])).rows.map((row) => row.id);
}

const partitions = () => ctx.config.persistPartitions;
const sorted = (ids: readonly string[]) => [...ids].sort();

it('when orders sit in the outbox streams of several shards, then each reaches Postgres once and every stream empties', async () => {
  const { id: saleId } = await api.createSale([{ sku: 'a', stock: 1_000 }, { sku: 'b', stock: 1_000 }]);
  const shards = shardStreams(saleId, ['a', 'b'], 4);
  const ids: string[] = [];
  for (const [i, shard] of shards.entries()) ids.push(...(await addOrders(shard, 5 + i, `s${i}`)));
  const persister = persisters.persisterOf(async () => shards, { batchSize: 4 });
  for (let round = 0; round < 10; round++) await persister.runOnce(Date.now() + round * 2_000);
  expect(await rowsOf(saleId)).toEqual(sorted(ids));
  for (const shard of shards) expect(await redis.xlen(shard.key)).toBe(0);
  // Read again: nothing new, nothing written twice.
  expect((await persister.runOnce(Date.now() + 60_000)).persisted).toBe(0);
  expect(await rowsOf(saleId)).toHaveLength(ids.length);
});

it('when Postgres refuses a shard’s batch, then it is handed to the queue of that shard’s partition only', async () => {
  const { id: saleId } = await api.createSale([{ sku: 'g', stock: 2 }]);
  const [shard] = shardStreams(saleId, ['g'], 1);
  // A user id longer than Postgres stores (its CHECK): the batch is refused as data. (The
  // oversell guard's refusals stay out of the queues: the writer records them as rows.)
  await addOrders(shard!, 1, 'x'.repeat(130));
  const persister = persisters.persisterOf(async () => [shard!]);
  await persister.runOnce();
  const owner = partitionOf(shard!.tag, partitions());
  const jobs = await Promise.all(persisters.queues.queues.map(async (queue) => (await queue.getJobs(['waiting', 'active', 'failed', 'completed', 'delayed'])).filter((job) => job.data.saleId === saleId).length));
  expect(jobs).toEqual(jobs.map((_, i) => (i === owner ? 1 : 0)));
});

it('when two persisters run, then they hold disjoint fair shares of the partitions and read only their own; when one dies, the other takes its partitions over within the lease time', async () => {
  const LEASE_MS = 600;
  const { id: saleId } = await api.createSale([{ sku: 'p', stock: 10_000 }, { sku: 'q', stock: 10_000 }]);
  // Enough shards that every partition has some.
  const shards = shardStreams(saleId, ['p', 'q'], 12);
  const byPartition = (partition: number) => shards.filter((shard) => partitionOf(shard.tag, partitions()) === partition);
  for (let partition = 0; partition < partitions(); partition++) expect(byPartition(partition).length).toBeGreaterThan(0);

  // Claims of idle entries only after a minute: what `one` leaves pending is taken over with its partitions.
  const options = { leaseMs: LEASE_MS, maxIdlePollMs: 50, claimIdleMs: 60_000 };
  const one = persisters.persisterOf(async () => shards, { consumer: 'one', ...options });
  const two = persisters.persisterOf(async () => shards, { consumer: 'two', ...options });
  // Both announce themselves first, so each then takes its fair share.
  await one.runOnce();
  await two.runOnce();
  await sleep(LEASE_MS / 3 + 50);
  await one.runOnce();
  await two.runOnce();
  const heldByOne = [...one.heldPartitions()].sort();
  const heldByTwo = [...two.heldPartitions()].sort();
  expect(heldByOne).toHaveLength(partitions() / 2);
  expect(heldByTwo).toHaveLength(partitions() / 2);
  expect(sorted([...heldByOne, ...heldByTwo].map(String))).toEqual(sorted(Array.from({ length: partitions() }, (_, i) => String(i))));
  for (const partition of heldByOne) expect(await redis.get(leaseKey(ctx.prefix, partition))).toBe('one');

  // Orders on every shard: each persister persists exactly its partitions' ones.
  const idsByShard = new Map<string, string[]>();
  for (const [i, shard] of shards.entries()) idsByShard.set(shard.key, await addOrders(shard, 3, `l${i}`));
  const idsOf = (held: readonly number[]) => held.flatMap((partition) => byPartition(partition).flatMap((shard) => idsByShard.get(shard.key)!));
  await sleep(100);
  expect((await two.runOnce()).persisted).toBe(idsOf(heldByTwo).length);
  expect(await rowsOf(saleId)).toEqual(sorted(idsOf(heldByTwo)));

  // `one` reads a batch of one of its streams and dies before writing it: it never renews again.
  // Its streams wait, untouched, until its leases run out.
  const doomed = byPartition(heldByOne[0]!)[0]!;
  const read = (await redis.xreadgroup('GROUP', OUTBOX_GROUP, 'one', 'COUNT', 2, 'STREAMS', doomed.key, '>')) as [string, unknown[]][];
  expect(read[0]![1]).toHaveLength(2);
  const diedAt = Date.now();
  const left = await Promise.all(heldByOne.flatMap((partition) => byPartition(partition).map((shard) => redis.xlen(shard.key))));
  expect(left.reduce((a, b) => a + b, 0)).toBe(idsOf(heldByOne).length);
  let rounds = 0;
  while ((await rowsOf(saleId)).length < shards.length * 3 && Date.now() - diedAt < 10_000) {
    await sleep(100);
    await two.runOnce();
    rounds++;
  }
  const takeoverMs = Date.now() - diedAt;
  expect(await rowsOf(saleId)).toEqual(sorted([...idsByShard.values()].flat()));
  expect([...two.heldPartitions()]).toHaveLength(partitions());
  // Within about two lease times (its members entry expires with its leases), not claimIdleMs-based.
  expect(takeoverMs).toBeLessThan(LEASE_MS * 4);
  for (const shard of shards) {
    expect(await redis.xlen(shard.key)).toBe(0);
    // What `one` had read was claimed and written long before the minute's claim idle time.
    expect(((await redis.xpending(shard.key, OUTBOX_GROUP)) as [number])[0]).toBe(0);
  }
  console.info(`[persist-partitions] ${partitions()} partitions, halves [${heldByOne}] / [${heldByTwo}]; takeover after ${takeoverMs} ms (${rounds} rounds)`);
  await two.stop();
  // Handed back on stop: another process can take them at once.
  for (let partition = 0; partition < partitions(); partition++) expect(await redis.exists(leaseKey(ctx.prefix, partition))).toBe(0);
});

it('when many shards are idle and one is busy, then the busy stream is read every round and the idle ones less and less often', async () => {
  const { id: saleId } = await api.createSale([{ sku: 'busy', stock: 10_000 }, { sku: 'idle', stock: 10 }]);
  const [busy] = shardStreams(saleId, ['busy'], 1);
  const idle = shardStreams(saleId, ['idle'], 100);
  const persister = persisters.persisterOf(async () => [busy!, ...idle], { idleDelayMs: 20, maxIdlePollMs: 400, claimIdleMs: 600_000 });
  const monitor = await monitorRedis(ctx.redisUrl, ctx.prefix);
  // 60 rounds 20 ms apart on the persister's clock, the busy shard taking an order before each.
  const start = Date.now();
  for (let round = 0; round < 60; round++) {
    await addOrders(busy!, 1, `busy-${round}`);
    expect((await persister.runOnce(start + round * 20)).persisted).toBe(1);
  }
  await monitor.drain(`${ctx.prefix}:drain-marker`);
  const reads = (stream: OutboxStream) => monitor.lines.filter((line) => line.includes('"xreadgroup"') && line.includes(`"${stream.key}"`)).length;
  const idleReads = new Set(idle.map(reads));
  await monitor.close();
  expect(reads(busy!)).toBe(60);
  // Empty reads at 0, 20, 60, 140, 300, 620 and 1020 ms (the pause doubles from 20 ms up to 400 ms):
  // 7 reads of each idle stream where reading every round would be 60.
  expect([...idleReads]).toEqual([7]);
  console.info(`[persist-partitions] 60 rounds over 1.2 s: the busy stream read 60 times, each of 100 idle ones 7 times`);
});
