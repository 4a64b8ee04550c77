// redis-loss: mid-rush the service's Redis loses everything (FLUSHDB of the private server: what a
// Redis that restarts empty looks like). The service must notice, answer 503 SALE_RECOVERING (never
// 404, never a guess) while it rebuilds the sale from Postgres, then sell on: GET /v1/sales/:id
// shows the right stock, shoppers at their limit still are, pending orders still expire, a keyed
// retry still replays. Orders accepted but not yet persisted when Redis lost them cannot come back:
// the drill measures that window (lossWindow) and checks nothing else was lost.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { placeOrder, type OrderOutcome } from '../../../test/integration/faults/harness.ts';
import { tokens } from '../../tokens.ts';
import { onDatabase } from '../../databases.ts';
import { finish, runDrill, startDrillStack, startRush, type Drill, type DrillOptions, type DrillStack, type Scenario } from '../drill.ts';

const WINDOW_SECONDS = 15;
const RECOVERY_TIMEOUT_MS = 30_000;

export const redisLoss: Scenario = {
  name: 'redis-loss',
  summary: 'FLUSHDB the service Redis mid-rush; 503 SALE_RECOVERING while the sale is rebuilt from Postgres, then every invariant',
  run: (options: DrillOptions) =>
    runDrill('redis-loss', options, async (drill) => {
      drill.fault = 'the service Redis lost all its data mid-rush (FLUSHDB, as a Redis restarting empty)';
      drill.recoveryMeaning = 'from the FLUSHDB to the first new 201 (the sale rebuilt from Postgres)';
      const s = await startDrillStack(drill, { sale: { paymentWindowSeconds: WINDOW_SECONDS } });
      const rush = startRush(drill, s);
      await rush.waitForAccepted(300, 30_000);
      // Mid-sale means some orders are already in Postgres: the checks below replay and expire
      // those. On a loaded machine the first persisted batch can trail the 300th 201.
      await untilSomePersisted(s.stack.databaseUrl, [...rush.ledger.accepted.keys()].slice(0, 50), 20_000);

      const redis = new Redis(s.stack.redisUrl, { maxRetriesPerRequest: 1 });
      drill.onCleanup(async () => redis.disconnect());
      const flushingAt = drill.now();
      await redis.flushdb();
      // Attempts sent from now on meet the empty Redis; those sent before may still have made an order.
      rush.phase = 'redis lost';
      const flushedAt = drill.event(`FLUSHDB done (${rush.ledger.accepted.size} orders accepted so far)`);
      await rush.waitAnswered(flushedAt, 15_000);
      const madeBefore = rush.madeBefore(flushedAt);
      const unpersisted = await notPersisted(s.stack.databaseUrl, madeBefore);
      drill.lossWindow = unpersisted.size;
      drill.event(`${madeBefore.length} orders were made before the flush (sent from t+${flushingAt} ms on, it took ${flushedAt - flushingAt} ms); ${unpersisted.size} of them not in Postgres`);

      const firstAfter = await waitRecovered(drill);
      drill.recoveryMs = firstAfter === undefined ? null : firstAfter - flushedAt;
      rush.phase = 'after';
      drill.event(firstAfter === undefined ? 'no 201 after the flush' : 'the sale takes orders again');
      const refusedWhileLost = rush.answersByPhase()['redis lost'] ?? {};
      const wrong = Object.keys(refusedWhileLost).filter((label) => /^(404|500)/.test(label));
      drill.check('while rebuilding: no 404 and no 500 (503 SALE_RECOVERING instead)', wrong.length === 0, JSON.stringify(refusedWhileLost));

      await checkReplays(drill, s, madeBefore.filter((id) => !unpersisted.has(id)).slice(0, 10));
      await checkLimits(drill, s);
      await checkExpiry(drill, s, madeBefore.filter((id) => !unpersisted.has(id)));
      const result = await finish(drill, s, 30_000, unpersisted);
      const lostOutsideWindow = result.missing.filter((id) => !unpersisted.has(id));
      drill.check(
        'every lost 201 was in the accepted-not-persisted window at the flush',
        lostOutsideWindow.length === 0,
        `${result.missing.length} lost, ${lostOutsideWindow.length} of them persisted before the flush${lostOutsideWindow.length > 0 ? ` (e.g. ${lostOutsideWindow.slice(0, 3).join(', ')})` : ''}`,
      );
      await checkStorefront(drill, s);
      drill.figures['201s not yet persisted at the flush (the loss window)'] = unpersisted.size;
    }),
};

/** The answer time of the first new 201 after the flush; undefined when none came in time. */
async function waitRecovered(drill: Drill): Promise<number | undefined> {
  const rush = drill.rush!;
  const started = Date.now();
  while (Date.now() - started < RECOVERY_TIMEOUT_MS) {
    const first = rush.firstAcceptedIn('redis lost');
    if (first !== undefined) return first;
    await sleep(50);
  }
  return undefined;
}

/** Waits (bounded) until at least one of these orders is in Postgres. */
async function untilSomePersisted(databaseUrl: string, ids: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await notPersisted(databaseUrl, ids)).size === ids.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
}

async function notPersisted(databaseUrl: string, ids: readonly string[]): Promise<Set<string>> {
  const found = await onDatabase(databaseUrl, (db) => db.query<{ id: string }>('SELECT id::text AS id FROM orders WHERE id::text = ANY($1)', [ids]));
  const persisted = new Set(found.rows.map((row) => row.id));
  return new Set(ids.filter((id) => !persisted.has(id)));
}

/** Keyed retries of orders made (and persisted) before the flush: each must replay its order. */
async function checkReplays(drill: Drill, s: DrillStack, ids: readonly string[]): Promise<void> {
  const rush = drill.rush!;
  const sign = tokens(s.stack.secret);
  const outcomes: { id: string; outcome: OrderOutcome }[] = [];
  for (const id of ids) {
    const order = rush.ledger.accepted.get(id)!;
    outcomes.push({ id, outcome: await placeOrder(s.api.baseUrl, s.saleId, { ...order, authorization: sign.shopper(order.userId) }) });
  }
  const replayed = outcomes.filter(({ id, outcome }) => outcome.kind === 'accepted' && outcome.replayed && outcome.orderId === id);
  drill.check(
    'a keyed retry of an order made before the loss replays it',
    ids.length > 0 && replayed.length === ids.length,
    `${replayed.length} of ${ids.length} replayed${replayed.length < ids.length ? `; others: ${JSON.stringify(outcomes.filter((o) => !replayed.includes(o)).slice(0, 3))}` : ''}`,
  );
}

/** Shoppers Postgres has at their limit (orders not about to expire) are refused a new unit. */
async function checkLimits(drill: Drill, s: DrillStack): Promise<void> {
  const atLimit = await onDatabase(s.stack.databaseUrl, (db) =>
    db.query<{ userId: string; sku: string }>(
      `SELECT o.user_id AS "userId", o.sku FROM orders o JOIN sale_items i USING (sale_id, sku)
        WHERE o.sale_id = $1 AND o.status IN ('pending_payment', 'paid')
        GROUP BY o.user_id, o.sku, i.per_user_limit
       HAVING sum(o.quantity) >= i.per_user_limit AND min(o.expires_at) > now() + interval '5 seconds'
        LIMIT 5`,
      [s.saleId],
    ),
  );
  const sign = tokens(s.stack.secret);
  const answers: string[] = [];
  for (const { userId, sku } of atLimit.rows) {
    const outcome = await placeOrder(s.api.baseUrl, s.saleId, { key: `limit-${userId}-${Date.now()}`, userId, sku, quantity: 1, authorization: sign.shopper(userId) });
    answers.push(outcome.kind === 'refused' ? outcome.code : outcome.kind);
  }
  drill.check(
    'shoppers at their limit before the loss are still at it',
    answers.length > 0 && answers.every((code) => code === 'PER_USER_LIMIT_EXCEEDED'),
    `${answers.length} shoppers at their limit tried one more: ${answers.join(', ') || 'none found'}`,
  );
}

/** Pending orders made before the loss still expire (in Postgres, within their window + a margin). */
async function checkExpiry(drill: Drill, s: DrillStack, ids: readonly string[]): Promise<void> {
  const deadline = Date.now() + WINDOW_SECONDS * 1000 + 10_000;
  let expired = 0;
  for (;;) {
    const result = await onDatabase(s.stack.databaseUrl, (db) =>
      db.query<{ n: string }>("SELECT count(*) AS n FROM orders WHERE id::text = ANY($1) AND status = 'expired'", [ids]),
    );
    expired = Number(result.rows[0]?.n ?? 0);
    if (expired === ids.length || Date.now() > deadline) break;
    await sleep(500);
  }
  drill.check('pending orders made before the loss still expire', ids.length > 0 && expired === ids.length, `${expired} of ${ids.length} expired`);
  if (expired === ids.length) drill.event(`the ${ids.length} pending orders made before the loss expired`);
}

/** GET /v1/sales/:id (cached up to 1 s per process) shows available = stock − sold. */
async function checkStorefront(drill: Drill, s: DrillStack): Promise<void> {
  let shown = '';
  let truth = '';
  // Orders keep expiring (stock coming back) for up to a payment window after the rush, and the
  // view is cached for a second: compare a fresh pair until they agree, for up to a window and more.
  const deadline = Date.now() + WINDOW_SECONDS * 1000 + 5_000;
  while (Date.now() < deadline) {
    const rows = await onDatabase(s.stack.databaseUrl, (db) =>
      db.query<{ sku: string; available: number }>('SELECT sku, initial_stock + restocked - sold AS available FROM sale_items WHERE sale_id = $1 ORDER BY sku', [s.saleId]),
    );
    const response = await fetch(`${s.api.baseUrl}/v1/sales/${s.saleId}`);
    const body = (await response.json()) as { items?: { sku: string; available: number }[] };
    shown = JSON.stringify(body.items?.map((item) => [item.sku, item.available]));
    truth = JSON.stringify(rows.rows.map((row) => [row.sku, row.available]));
    if (rows.rows.every((row) => body.items?.some((item) => item.sku === row.sku && item.available === row.available))) break;
    await sleep(400);
  }
  drill.check('GET /v1/sales/:id shows the right available stock', shown === truth, `shown ${shown}, Postgres ${truth}`);
}
