// Crash safety of the outbox persister: one that dies after writing a batch to Postgres and before
// acknowledging it leaves its entries pending; a fresh persister claims and writes them again, and
// the idempotent writer keeps every order to one Postgres row — shown once deterministically in
// process, and again with the worker role SIGKILLed at random moments while orders flow.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { createPool } from '../../../src/db/pool.ts';
import { createLogger } from '../../../src/logger.ts';
import { createMetrics } from '../../../src/metrics.ts';
import { BatchWriter } from '../../../src/orders/batch-writer.ts';
import { DeadLetters } from '../../../src/orders/dead-letters.ts';
import { OrderWriter } from '../../../src/orders/order-writer.ts';
import { latestPerOrder, parseStreamEntries, type RawStreamEntries } from '../../../src/orders/outbox.ts';
import { OUTBOX_GROUP, OutboxPersister } from '../../../src/orders/outbox-persister.ts';
import { outboxStreamsOf, partitionOf } from '../../../src/orders/outbox-streams.ts';
import { leaseKey } from '../../../src/orders/partition-leases.ts';
import { createPersistQueues } from '../../../src/orders/queue.ts';
import { SaleRepository } from '../../../src/sales/repository.ts';
import { shardKeysOfSale } from '../../support/sale-state.ts';
import { defineScripts } from '../../../src/stock/scripts/registry.ts';
import { saleBody } from '../../../tools/sale-body.ts';
import { tokens } from '../../../tools/tokens.ts';
import {
  createSale,
  drive,
  expectExactlyPersisted,
  killAllRoles,
  Ledger,
  orderRequests,
  outboxDrained,
  outboxPending,
  startRole,
  startStack,
  summarise,
  type RoleProcess,
  type Stack,
} from './harness.ts';

let stack: Stack;
let api: RoleProcess;
let redis: Redis;
beforeAll(async () => {
  stack = await startStack();
  api = await startRole(stack, 'api');
  redis = new Redis(stack.redisUrl);
});
afterAll(async () => {
  redis?.disconnect();
  await killAllRoles();
  await stack?.stop();
});

/** How many of the orders behind these stream entries Postgres already holds. */
async function inPostgres(databaseUrl: string, redis: Redis, stream: string, saleId: string, ids: readonly string[]): Promise<number> {
  const raw = (await Promise.all(ids.map((id) => redis.xrange(stream, id, id)))).flat() as RawStreamEntries;
  const orderIds = parseStreamEntries(saleId, raw).entries.map((entry) => entry.order.id);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE id = ANY($1::uuid[])', [orderIds]);
    return Number(rows[0]?.n ?? 0);
  } finally {
    await db.end();
  }
}

// Runs first: no worker role is up yet, so nothing but this test touches the outbox.
it(
  'when a persister dies after writing a batch and before acknowledging it, ' +
    'then a fresh persister claims and rewrites the entries and Postgres holds each order exactly once',
  async () => {
    const saleId = await createSale(api.baseUrl, stack.secret, [{ sku: 'phone', stock: 1_000, perUserLimit: 2 }]);
    const ledger = new Ledger();
    const outcomes = await drive(() => api.baseUrl, saleId, orderRequests(stack.secret, ['phone'], 120), {
      concurrency: 16,
      retries: 40,
      onOutcome: (request, outcome) => ledger.record(request, outcome),
    }).done;
    expect(summarise(outcomes.values())).toEqual({ accepted: 120 });

    const config = loadConfig(stack.env({ LOG_LEVEL: 'silent' }));
    const streams = (await shardKeysOfSale(redis, stack.prefix, saleId)).map((shard) => shard.outbox);
    const persistQueues = createPersistQueues(config);
    const pool = createPool(config);
    try {
      // The doomed persister: reads every entry through the group and writes them to Postgres as
      // one batch — then dies without acknowledging.
      const read: RawStreamEntries = [];
      for (const stream of streams) {
        await redis.xgroup('CREATE', stream, OUTBOX_GROUP, '0', 'MKSTREAM');
        const reply = (await redis.xreadgroup('GROUP', OUTBOX_GROUP, 'doomed-persister', 'COUNT', 1_000, 'STREAMS', stream, '>')) as
          | [string, RawStreamEntries][]
          | null;
        read.push(...(reply?.[0]?.[1] ?? []));
      }
      const { entries, malformed } = parseStreamEntries(saleId, read);
      expect(malformed).toEqual([]);
      expect(entries).toHaveLength(120);
      const writer = new OrderWriter(pool);
      expect((await writer.write(saleId, latestPerOrder(entries))).inserted).toHaveLength(120);
      expect(await outboxPending(redis, stack.prefix, saleId)).toEqual({ total: 120, length: 120 });

      // A fresh persister, in smaller batches: the same orders are written again in other batches,
      // so exactly-once comes from the writer alone.
      await sleep(300);
      const metrics = createMetrics();
      const persister = new OutboxPersister(
        defineScripts(redis, stack.prefix),
        new BatchWriter(writer, redis, stack.prefix, metrics, createLogger(config)),
        persistQueues.queues,
        async () => outboxStreamsOf(stack.prefix, (await new SaleRepository(pool).find(saleId))!),
        metrics,
        createLogger(config),
        { claimIdleMs: 200, batchSize: 50, leaseMs: 0, deadLetters: new DeadLetters(pool) },
      );
      let persisted = 0;
      for (let round = 0; round < 20 && (await outboxPending(redis, stack.prefix, saleId)).total > 0; round++) {
        persisted += (await persister.runOnce()).persisted;
        await sleep(120);
      }
      expect(persisted).toBe(120);
      expect(await outboxPending(redis, stack.prefix, saleId)).toEqual({ total: 0, length: 0 });
      // Rewritten, nothing inserted again, nothing refused (no batch handed to BullMQ).
      expect((await metrics.ordersPersisted.get()).values[0]?.value ?? 0).toBe(0);
      expect(await persistQueues.getJobCounts('waiting', 'failed', 'completed')).toMatchObject({ waiting: 0, failed: 0, completed: 0 });

      const result = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 20_000);
      console.info(
        `[persister-killed/deterministic] 120 orders written but left pending by the dead persister, ` +
          `claimed and rewritten in batches of 50; ${result.rows} rows`,
      );
    } finally {
      await persistQueues.close();
      await pool.end();
    }
  },
  60_000,
);

it(
  'when the worker role (persister and writers) is SIGKILLed three times at random moments while orders flow, ' +
    'then after restarts Postgres holds every 201 exactly once',
  async () => {
    const saleId = await createSale(api.baseUrl, stack.secret, [
      { sku: 'phone', stock: 100_000, perUserLimit: 2 },
      { sku: 'tablet', stock: 100_000, perUserLimit: 2 },
    ]);
    const ledger = new Ledger();
    let flowing = true;
    const flow = drive(() => api.baseUrl, saleId, orderRequests(stack.secret, ['phone', 'tablet'], 20_000), {
      concurrency: 16,
      retries: 40,
      stop: () => !flowing,
      onOutcome: (request, outcome) => ledger.record(request, outcome),
    });

    let worker = await startRole(stack, 'worker');
    const streams = (await shardKeysOfSale(redis, stack.prefix, saleId)).map((shard) => shard.outbox);
    const kills: string[] = [];
    let caughtBetweenWriteAndAck = 0;
    try {
      for (let kill = 1; kill <= 3; kill++) {
        // Mostly while the new persister catches up on the backlog left during the restart: big batches.
        const aliveFor = 50 + Math.floor(Math.random() * 600);
        await sleep(aliveFor);
        await worker.kill('SIGKILL');
        // What the dead persister had read and not acknowledged; when their orders are all in
        // Postgres, the kill fell between the write and the acknowledgement.
        const consumer = `${hostname()}-${worker.pid}`;
        // NOGROUP: killed before its first round made the group — nothing read, nothing to lose.
        let unackedCount = 0;
        let written = 0;
        for (const stream of streams) {
          const unacked = (await redis.xpending(stream, OUTBOX_GROUP, '-', '+', 10_000, consumer).catch(() => [])) as [string, string, number, number][];
          unackedCount += unacked.length;
          if (unacked.length > 0) written += await inPostgres(stack.databaseUrl, redis, stream, saleId, unacked.map(([id]) => id));
        }
        let state = 'nothing unacknowledged';
        if (unackedCount > 0) {
          if (written === unackedCount) caughtBetweenWriteAndAck++;
          state = `${unackedCount} entries unacknowledged, ${written} of their orders already in Postgres`;
        }
        kills.push(`kill ${kill} after ${aliveFor} ms: ${state}`);
        worker = await startRole(stack, 'worker');
      }
      await sleep(1_000);
    } finally {
      flowing = false;
    }
    const outcomes = await flow.done;
    const counts = summarise(outcomes.values());
    const others = [...outcomes.values()].filter((outcome) => outcome.kind !== 'accepted').slice(0, 5);
    const apiErrors = api.output().split('\n').filter((line) => /"level":(40|50|60)/.test(line)).slice(-5);
    expect(counts, JSON.stringify({ others, apiErrors })).toEqual({ accepted: outcomes.size });

    // A dead persister's entries are claimed once idle for QUEUE_LOCK_DURATION_MS (2 s here).
    const persisted = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 45_000);
    // Every row may already be in Postgres while a dead persister's entries still wait to be
    // claimed and acknowledged: the outbox empties then.
    expect(await outboxDrained(redis, stack.prefix, saleId, 15_000)).toEqual({ total: 0, length: 0 });
    console.info(
      `[persister-killed/random] ${ledger.accepted.size} orders; ${kills.join('; ')}; ` +
        `${caughtBetweenWriteAndAck} of 3 kills between write and ack; ` +
        `all persisted ${persisted.waitedMs} ms after the flow stopped`,
    );
    // Stopped gracefully: its leases are handed back for the next test's workers.
    await worker.kill('SIGTERM');
  },
  120_000,
);

/** A sale id whose outbox streams (the shard's, and layout 1's while it lasts) all lie in `partition`. */
function saleIdIn(partition: number, partitions: number, tag: string): string {
  for (let n = 0; ; n++) {
    const saleId = `pk-${tag}-${partition}-${n}`;
    const streams = outboxStreamsOf(stack.prefix, { id: saleId, items: [{ sku: 'phone', name: 'phone', unitPrice: 1, stock: 1, perUserLimit: 1 }] });
    if (streams.every((stream) => partitionOf(stream.tag, partitions) === partition)) return saleId;
  }
}

async function leaseHolders(partitions: number): Promise<(string | null)[]> {
  return Promise.all(Array.from({ length: partitions }, (_, i) => redis.get(leaseKey(stack.prefix, i))));
}

it(
  'when two worker processes share the partitions and one is SIGKILLed while orders flow, ' +
    'then the other takes its partitions over within seconds and Postgres holds every 201 exactly once',
  async () => {
    const partitions = loadConfig(stack.env()).persistPartitions;
    const one = await startRole(stack, 'worker');
    const two = await startRole(stack, 'worker');
    const consumerOf = (role: { pid: number }) => `${hostname()}-${role.pid}`;
    // Fair shares: each holds half once both have renewed.
    let holders: (string | null)[] = [];
    for (let i = 0; i < 100; i++) {
      holders = await leaseHolders(partitions);
      if (holders.filter((holder) => holder === consumerOf(one)).length === partitions / 2 && holders.filter((holder) => holder === consumerOf(two)).length === partitions / 2) break;
      await sleep(100);
    }
    expect(holders.filter((holder) => holder === consumerOf(one))).toHaveLength(partitions / 2);
    const doomed = holders.flatMap((holder, partition) => (holder === consumerOf(one) ? [partition] : []));

    // One sale per partition, so the doomed worker's partitions carry orders.
    const tag = randomBytes(3).toString('hex');
    const saleIds = Array.from({ length: partitions }, (_, partition) => saleIdIn(partition, partitions, tag));
    for (const saleId of saleIds) {
      const response = await fetch(`${api.baseUrl}/v1/admin/sales`, {
        method: 'POST',
        headers: { authorization: tokens(stack.secret).admin(), 'content-type': 'application/json' },
        body: JSON.stringify(saleBody([{ sku: 'phone', stock: 100_000, perUserLimit: 2 }], { id: saleId })),
      });
      expect(response.status).toBe(201);
    }
    const ledgers = saleIds.map(() => new Ledger());
    let flowing = true;
    const flows = saleIds.map((saleId, s) =>
      drive(() => api.baseUrl, saleId, orderRequests(stack.secret, ['phone'], 5_000), {
        concurrency: 4,
        retries: 40,
        stop: () => !flowing,
        onOutcome: (request, outcome) => ledgers[s]!.record(request, outcome),
      }),
    );
    let takeoverMs = Number.NaN;
    try {
      await sleep(1_500);
      await one.kill('SIGKILL');
      const killedAt = Date.now();
      while (Date.now() - killedAt < 15_000) {
        if ((await leaseHolders(partitions)).every((holder) => holder === consumerOf(two))) {
          takeoverMs = Date.now() - killedAt;
          break;
        }
        await sleep(50);
      }
      await sleep(1_500);
    } finally {
      flowing = false;
    }
    for (const flow of flows) expect(summarise((await flow.done).values())).toEqual({ accepted: (await flow.done).size });
    // The lease (3 s) runs out and the survivor's next renewal (every second) takes the partitions.
    expect(takeoverMs).toBeLessThan(6_000);
    const waited: number[] = [];
    for (const [s, saleId] of saleIds.entries()) {
      expect(ledgers[s]!.accepted.size).toBeGreaterThan(0);
      waited.push((await expectExactlyPersisted(stack.databaseUrl, saleId, ledgers[s]!.accepted, 30_000)).waitedMs);
    }
    console.info(
      `[persister-killed/partitions] ${partitions} partitions, worker ${one.pid} held [${doomed}] and was SIGKILLed; ` +
        `worker ${two.pid} held all ${takeoverMs} ms later; ${ledgers.map((ledger) => ledger.accepted.size).join('+')} orders, ` +
        `all persisted within ${Math.max(...waited)} ms after the flow stopped`,
    );
    await two.kill('SIGTERM');
  },
  120_000,
);
