// A Postgres outage: the private Postgres is SIGKILLed for 30 s while shoppers keep ordering.
// Redis decides, so every attempt is still answered 201 (and a retried key replays its order);
// readiness reports the outage; once Postgres is back the backlog (outbox and retried jobs)
// lands exactly once.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  answers,
  createSale,
  drive,
  expectExactlyPersisted,
  killAllRoles,
  Ledger,
  orderRequests,
  placeOrder,
  startRole,
  startStack,
  summarise,
  waitForStatus,
  type OrderOutcome,
  type OrderRequest,
  type RoleProcess,
  type Stack,
} from './harness.ts';

let stack: Stack;
let api: RoleProcess;
beforeAll(async () => {
  stack = await startStack();
  [api] = await Promise.all([startRole(stack, 'api'), startRole(stack, 'worker')]);
});
afterAll(async () => {
  await killAllRoles();
  await stack?.stop();
});

const OUTAGE_MS = 30_000;

it(
  'when Postgres is SIGKILLed for 30 s while orders keep coming, then every order is still answered 201, ' +
    '/health/ready is 503 during the outage and 200 after, and every 201 persists exactly once after the restart',
  async () => {
    const saleId = await createSale(api.baseUrl, stack.secret, [
      { sku: 'phone', stock: 100_000 },
      { sku: 'tablet', stock: 100_000 },
    ]);
    const ledger = new Ledger();
    let phase: 'before' | 'outage' | 'after' = 'before';
    const acceptedIn = { before: 0, outage: 0, after: 0 };
    const answered: { request: OrderRequest; orderId: string }[] = [];
    let flowing = true;
    const flow = drive(() => api.baseUrl, saleId, orderRequests(stack.secret, ['phone', 'tablet'], 50_000), {
      concurrency: 4,
      retries: 40,
      pauseMs: 20,
      stop: () => !flowing,
      onOutcome: (request, outcome) => {
        ledger.record(request, outcome);
        if (outcome.kind !== 'accepted') return;
        acceptedIn[phase]++;
        answered.push({ request, orderId: outcome.orderId });
      },
    });

    const readyDuringOutage: (number | undefined)[] = [];
    const replays: { orderId: string; outcome: OrderOutcome }[] = [];
    let readyAfterMs = -1;
    let restartedAt = 0;
    try {
      await sleep(2_000);
      await stack.postgres.kill('SIGKILL');
      phase = 'outage';
      const outageStarted = Date.now();
      while (Date.now() - outageStarted < OUTAGE_MS) {
        readyDuringOutage.push(await answers(`${api.baseUrl}/health/ready`));
        await sleep(1_000);
        // Halfway, shoppers retry orders already answered (some from before, some during the
        // outage): Redis replays them, Postgres is not needed for that either.
        if (replays.length === 0 && Date.now() - outageStarted > OUTAGE_MS / 2) {
          const retried = [...answered.slice(0, 10), ...answered.slice(-10)];
          for (const { request, orderId } of retried) replays.push({ orderId, outcome: await placeOrder(api.baseUrl, saleId, request) });
        }
      }

      await stack.postgres.restart();
      phase = 'after';
      restartedAt = Date.now();
      readyAfterMs = await waitForStatus(`${api.baseUrl}/health/ready`, 200, 20_000);
      await sleep(2_000);
    } finally {
      flowing = false;
    }
    const outcomes = await flow.done;

    expect(summarise(outcomes.values())).toEqual({ accepted: outcomes.size });
    expect(acceptedIn.outage).toBeGreaterThan(0);
    expect(readyDuringOutage.length).toBeGreaterThan(10);
    expect(new Set(readyDuringOutage)).toEqual(new Set([503]));
    expect(replays).toHaveLength(20);
    for (const { orderId, outcome } of replays) expect(outcome).toEqual({ kind: 'accepted', orderId, replayed: true });

    const persisted = await expectExactlyPersisted(stack.databaseUrl, saleId, ledger.accepted, 45_000);
    console.info(
      `[postgres-outage] 201s before ${acceptedIn.before}, during the ${OUTAGE_MS / 1000} s outage ${acceptedIn.outage}, after ${acceptedIn.after}; ` +
        `${replays.length} retried keys replayed during the outage; ` +
        `/health/ready 503 on all ${readyDuringOutage.length} probes during the outage, 200 again ${readyAfterMs} ms after the restart; ` +
        `all ${persisted.rows} persisted ${Date.now() - restartedAt} ms after the restart`,
    );
  },
  150_000,
);
