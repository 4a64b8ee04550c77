// Crash safety of the API role: SIGKILLed mid-burst, some requests die after the reserve script
// ran and before their 201 left. Retried with their Idempotency-Key they recover those orders
// (REPLAY), and Postgres ends with exactly the orders that were answered 201.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  availableInRedis,
  createSale,
  drive,
  expectExactlyPersisted,
  killAllRoles,
  Ledger,
  needsRetry,
  orderRequests,
  ordersAcceptedInRedis,
  startRole,
  startStack,
  summarise,
  type OrderOutcome,
  type OrderRequest,
  type RoleProcess,
  type Stack,
} from './harness.ts';

let stack: Stack;
let api: RoleProcess;
let admin: Redis | undefined;
beforeAll(async () => {
  // DEBUG SLEEP (below) needs the debug command; the private Redis allows it locally.
  stack = await startStack({ redisArgs: ['--enable-debug-command', 'local'] });
  [api] = await Promise.all([startRole(stack, 'api'), startRole(stack, 'worker')]);
});
afterAll(async () => {
  admin?.disconnect();
  await killAllRoles();
  await stack?.stop();
});

const SKUS = ['phone', 'tablet'];
const STOCK_PER_SKU = 800;
const REQUESTS = 1_200;
const KILL_AFTER_ANSWERS = 300;
const REDIS_STALL_SECONDS = 0.5;

it(
  'when the API is SIGKILLed mid-burst and the unanswered requests are retried with their Idempotency-Key, ' +
    'then the orders made for them are replayed, Postgres holds exactly the 201s and Redis stock is the initial stock minus their quantities',
  async () => {
    const port = api.port;
    const saleId = await createSale(api.baseUrl, stack.secret, SKUS.map((sku) => ({ sku, stock: STOCK_PER_SKU })));
    const requests = orderRequests(stack.secret, SKUS, REQUESTS);
    const ledger = new Ledger();

    let answered = 0;
    const burst = drive(() => api.baseUrl, saleId, requests, {
      concurrency: 64,
      onOutcome: (request, outcome) => {
        ledger.record(request, outcome);
        if (outcome.kind !== 'no-answer') answered++;
      },
    });

    // Mid-burst, Redis stalls for half a second (a latency spike) while the API keeps taking
    // requests: their scripts pile up in the API (ioredis keeps one auto-pipeline in flight per
    // connection) and run as one pipeline the moment Redis wakes. The API is frozen (SIGSTOP) right
    // then; once the answers it had already written have arrived, the orders still without a 201
    // are exactly those made between the script and the response, and the API is SIGKILLed with
    // them. Should the freeze land where there are none, it resumes and the cycle repeats.
    admin = new Redis(stack.redisUrl);
    const redis = admin;
    const unansweredNow = async () => (await ordersAcceptedInRedis(stack, saleId)) - ledger.accepted.size;
    const burstStarted = Date.now();
    while (answered < KILL_AFTER_ANSWERS) await sleep(5);
    let cycles = 0;
    for (;;) {
      cycles++;
      await redis.call('DEBUG', 'SLEEP', String(REDIS_STALL_SECONDS));
      await sleep(Math.random() * 5);
      api.signal('SIGSTOP');
      await sleep(300);
      if ((await unansweredNow()) > 0 || cycles >= 10) break;
      api.signal('SIGCONT');
      await sleep(50 + Math.random() * 100);
    }
    const inFlightAtKill = burst.progress.inFlight;
    const answeredAtKill = answered;
    await api.kill('SIGKILL');
    const first = await burst.done;
    const burstMs = Date.now() - burstStarted;
    // Orders the script made whose 201 never left: the ones only a replay can recover.
    const unanswered201s = (await ordersAcceptedInRedis(stack, saleId)) - ledger.accepted.size;
    const firstCounts = summarise(first.values());

    // The same API comes back on its port; every request without a final answer is retried with its key.
    api = await startRole(stack, 'api', { port });
    const final = new Map<OrderRequest, OrderOutcome>(first);
    const cutMidRequest = new Set(requests.filter((request) => {
      const outcome = first.get(request);
      return outcome?.kind === 'no-answer' && outcome.reached;
    }));
    const toRetry = requests.filter((request) => needsRetry(first.get(request)));
    let pending = toRetry;
    let recoveredByReplay = 0;
    for (let round = 0; round < 5 && pending.length > 0; round++) {
      if (round > 0) await sleep(1_000);
      const retry = await drive(() => api.baseUrl, saleId, pending, {
        concurrency: 32,
        onOutcome: (request, outcome) => {
          ledger.record(request, outcome);
          if (outcome.kind === 'accepted' && outcome.replayed) recoveredByReplay++;
        },
      }).done;
      for (const [request, outcome] of retry) final.set(request, outcome);
      pending = pending.filter((request) => needsRetry(final.get(request)));
    }
    const retryCounts = summarise(toRetry.map((request) => final.get(request)!));

    expect(pending).toHaveLength(0);
    // Only a request cut mid-flight can have made an order it never answered: exactly those replay.
    expect(unanswered201s).toBeGreaterThan(0);
    expect(recoveredByReplay).toBe(unanswered201s);
    const replayedElsewhere = toRetry.filter((request) => {
      const outcome = final.get(request);
      return outcome?.kind === 'accepted' && outcome.replayed && !cutMidRequest.has(request);
    });
    expect(replayedElsewhere).toHaveLength(0);

    const persisted = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 30_000);
    const available = await availableInRedis(stack, saleId, SKUS);
    const sold = ledger.quantityBySku();
    for (const sku of SKUS) expect(available.get(sku)).toBe(STOCK_PER_SKU - (sold.get(sku) ?? 0));

    console.info(
      `[api-killed] burst ${burstMs} ms; ${cycles} freeze cycle(s); SIGKILL after ${answeredAtKill} answers with ${inFlightAtKill} requests in flight; ` +
        `orders made but unanswered: ${unanswered201s}; first pass ${JSON.stringify(firstCounts)}; ` +
        `retried ${toRetry.length} (${cutMidRequest.size} cut mid-request), recovered by replay ${recoveredByReplay}; ` +
        `retry outcomes ${JSON.stringify(retryCounts)}; 201s ${ledger.accepted.size}, all persisted ${persisted.waitedMs} ms after the retries; ` +
        `available ${JSON.stringify(Object.fromEntries(available))}`,
    );
  },
  120_000,
);
