// Crash safety of the outbox relay: a relay that dies after enqueueing a batch and before
// acknowledging it leaves its entries pending; a fresh relay claims and re-relays them, and the
// idempotent writer keeps every order to one Postgres row — shown once deterministically in
// process, and again with the worker role SIGKILLed at random moments while orders flow.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.ts';
import { createLogger } from '../../../src/logger.ts';
import { parseStreamEntries } from '../../../src/orders/outbox.ts';
import { createPersistQueue, PERSIST_JOB } from '../../../src/orders/queue.ts';
import { OutboxRelay, RELAY_GROUP } from '../../../src/orders/relay.ts';
import { saleKeys } from '../../../src/stock/keys.ts';
import { defineScripts } from '../../../src/stock/scripts/registry.ts';
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

type RawEntries = [string, string[]][];

// Runs first: no worker role is up yet, so nothing but this test touches the outbox.
it(
  'when a relay dies after enqueueing a batch and before acknowledging it, ' +
    'then a fresh relay claims and re-relays the entries and Postgres holds each order exactly once',
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
    const stream = saleKeys(stack.prefix, saleId).outbox;
    const persistQueue = createPersistQueue(config);
    let worker: RoleProcess | undefined;
    try {
      // The doomed relay: reads every entry through the group and enqueues them as one batch with
      // the relay's deterministic job id — then dies without acknowledging.
      await redis.xgroup('CREATE', stream, RELAY_GROUP, '0', 'MKSTREAM');
      const reply = (await redis.xreadgroup('GROUP', RELAY_GROUP, 'doomed-relay', 'COUNT', 1_000, 'STREAMS', stream, '>')) as
        | [string, RawEntries][]
        | null;
      const { entries, malformed } = parseStreamEntries(saleId, reply?.[0]?.[1] ?? []);
      expect(malformed).toEqual([]);
      expect(entries).toHaveLength(120);
      const first = entries[0]!.streamId;
      const last = entries[entries.length - 1]!.streamId;
      await persistQueue.queue.add(PERSIST_JOB, { saleId, entries }, { jobId: `${saleId}|${first}|${last}|${entries.length}` });
      expect(await outboxPending(redis, stack.prefix, saleId)).toEqual({ total: 120, length: 120 });

      // A fresh relay, in smaller batches, so the same orders also reach the queue under new job
      // ids: exactly-once must come from the writer, not only from BullMQ's job-id dedup.
      await sleep(300);
      const relay = new OutboxRelay(defineScripts(redis, stack.prefix), persistQueue.queue, async () => [saleId], createLogger(config), {
        claimIdleMs: 200,
        batchSize: 50,
      });
      let moved = 0;
      for (let round = 0; round < 20 && (await outboxPending(redis, stack.prefix, saleId)).total > 0; round++) {
        moved += await relay.runOnce();
        await sleep(120);
      }
      expect(moved).toBe(120);
      expect(await outboxPending(redis, stack.prefix, saleId)).toEqual({ total: 0, length: 0 });
      const jobs = 1 + Math.ceil(120 / 50);
      expect(await persistQueue.queue.getJobCounts('waiting')).toMatchObject({ waiting: jobs });

      // The writers: a worker role, whose four concurrent slots upsert overlapping batches.
      worker = await startRole(stack, 'worker');
      const persisted = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 20_000);
      let counts = await persistQueue.queue.getJobCounts('completed', 'failed', 'waiting', 'active');
      for (let i = 0; i < 40 && (counts.completed ?? 0) < jobs; i++) {
        await sleep(100);
        counts = await persistQueue.queue.getJobCounts('completed', 'failed', 'waiting', 'active');
      }
      expect(counts).toMatchObject({ completed: jobs, failed: 0, waiting: 0, active: 0 });
      console.info(
        `[relay-killed/deterministic] 120 orders left pending by the dead relay, re-relayed as ${jobs - 1} more jobs; ` +
          `${jobs} jobs completed, ${persisted.rows} rows, persisted ${persisted.waitedMs} ms after the worker started`,
      );
    } finally {
      await persistQueue.close();
      await worker?.kill('SIGTERM');
    }
  },
  60_000,
);

it(
  'when the worker role (relay and writers) is SIGKILLed three times at random moments while orders flow, ' +
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

    const persistQueue = createPersistQueue(loadConfig(stack.env({ LOG_LEVEL: 'silent' })));
    const stream = saleKeys(stack.prefix, saleId).outbox;
    let worker = await startRole(stack, 'worker');
    const kills: string[] = [];
    let caughtBetweenEnqueueAndAck = 0;
    try {
      for (let kill = 1; kill <= 3; kill++) {
        // Mostly while the new relay catches up on the backlog left during the restart: big batches.
        const aliveFor = 50 + Math.floor(Math.random() * 600);
        await sleep(aliveFor);
        await worker.kill('SIGKILL');
        // What the dead relay had read and not acknowledged; when its batch's job exists, the kill
        // fell between the enqueue and the acknowledgement.
        const consumer = `${hostname()}-${worker.pid}`;
        // NOGROUP: killed before its first round made the group — nothing read, nothing to lose.
        const unacked = (await redis.xpending(stream, RELAY_GROUP, '-', '+', 10_000, consumer).catch(() => [])) as [string, string, number, number][];
        let state = 'nothing unacknowledged';
        if (unacked.length > 0) {
          const jobId = `${saleId}|${unacked[0]![0]}|${unacked[unacked.length - 1]![0]}|${unacked.length}`;
          const enqueued = (await persistQueue.queue.getJob(jobId)) !== undefined;
          if (enqueued) caughtBetweenEnqueueAndAck++;
          state = `${unacked.length} entries unacknowledged, ${enqueued ? 'already enqueued' : 'not yet enqueued'}`;
        }
        kills.push(`kill ${kill} after ${aliveFor} ms: ${state}`);
        worker = await startRole(stack, 'worker');
      }
      await sleep(1_000);
    } finally {
      flowing = false;
      await persistQueue.close();
    }
    const outcomes = await flow.done;
    const counts = summarise(outcomes.values());
    const others = [...outcomes.values()].filter((outcome) => outcome.kind !== 'accepted').slice(0, 5);
    const apiErrors = api.output().split('\n').filter((line) => /"level":(40|50|60)/.test(line)).slice(-5);
    expect(counts, JSON.stringify({ others, apiErrors })).toEqual({ accepted: outcomes.size });

    // A dead relay's entries are claimed once idle for 5 s; a dead writer's job once its 2 s lock lapses.
    const persisted = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 45_000);
    // Every row may already be in Postgres while a dead relay's entries still wait to be claimed
    // (after 5 s idle) and acknowledged: the outbox empties then.
    expect(await outboxDrained(redis, stack.prefix, saleId, 15_000)).toEqual({ total: 0, length: 0 });
    console.info(
      `[relay-killed/random] ${ledger.accepted.size} orders; ${kills.join('; ')}; ` +
        `${caughtBetweenEnqueueAndAck} of 3 kills between enqueue and ack; ` +
        `all persisted ${persisted.waitedMs} ms after the flow stopped`,
    );
  },
  120_000,
);
