// payment-outage: the payment provider is down for longer than the payment window. A provider
// outage is not the shopper's fault, so the operator switch (POST /v1/admin/payments/outage) stretches
// the window: while it is on nothing expires; when it ends, every pending order whose deadline fell
// inside the outage gets it moved by the outage's length. The drill orders, turns the switch on,
// lets the deadlines pass, turns it off, pays half of those orders in their stretched window and
// watches the other half expire (exactly once, their stock back) at their stretched deadline.
import { setTimeout as sleep } from 'node:timers/promises';
import { tokens } from '../../tokens.ts';
import { finish, runDrill, startDrillStack, startRush, type DrillOptions, type Scenario } from '../drill.ts';
import { onDatabase } from '../../databases.ts';
import { waitPersisted } from '../postgres.ts';

const WINDOW_SECONDS = 4;
const OUTAGE_MS = 8_000;

export const paymentOutage: Scenario = {
  name: 'payment-outage',
  summary: `payments down ${OUTAGE_MS / 1000} s (> the ${WINDOW_SECONDS} s window), operator switch on: nothing expires, deadlines stretch`,
  run: (options: DrillOptions) =>
    runDrill('payment-outage', options, async (drill) => {
      drill.fault = `the payment provider was down ${OUTAGE_MS / 1000} s, longer than the ${WINDOW_SECONDS} s payment window; the operator turned the outage switch on`;
      drill.recoveryMeaning = 'from the end of the outage to every unpaid order of the outage expired at its stretched deadline';
      const s = await startDrillStack(drill, { sale: { paymentWindowSeconds: WINDOW_SECONDS } });
      const admin = tokens(s.stack.secret).admin();
      const outage = async (active: boolean): Promise<number> => {
        const response = await fetch(`${s.api.baseUrl}/v1/admin/payments/outage`, {
          method: 'POST',
          headers: { authorization: admin, 'content-type': 'application/json' },
          body: JSON.stringify({ active }),
        });
        await response.arrayBuffer();
        return response.status;
      };

      const rush = startRush(drill, s, { concurrency: 4, pauseMs: 20 });
      await rush.waitForAccepted(40, 30_000);
      const switchingAt = drill.now();
      const switchedOn = await outage(true);
      if (switchedOn !== 200) throw new Error(`turning the payment-outage switch on answered ${switchedOn}`);
      const startedAt = drill.event(`payments down; outage switch on (answered ${switchedOn})`);
      rush.phase = 'payments down';
      // Orders whose deadline falls inside the outage: made before it, less than a window (with a
      // margin for the sweeper's second) before it.
      await rush.waitAnswered(switchingAt, 10_000);
      const due = rush.madeBetween(switchingAt - (WINDOW_SECONDS * 1000 - 1_500), switchingAt).map((id) => [id, rush.ledger.accepted.get(id)!] as const);
      drill.event(`${due.length} orders have their deadline inside the outage`);
      await sleep(OUTAGE_MS);
      const expiredDuring = await statuses(s.stack.databaseUrl, due.map(([id]) => id));
      const switchedOff = await outage(false);
      const endedAt = drill.event(`payments back; outage switch off (answered ${switchedOff})`);
      rush.phase = 'after';
      const success = (status: number) => status >= 200 && status < 300;
      drill.check('the switch answered 2xx both ways', success(switchedOn) && success(switchedOff), `on ${switchedOn}, off ${switchedOff}`);
      drill.check(
        'nothing expired during the outage',
        (expiredDuring.get('expired') ?? 0) === 0,
        `orders due during the outage, by status at its end: ${JSON.stringify(Object.fromEntries(expiredDuring))}`,
      );

      // Half of them are paid in their stretched window, the other half is left to expire.
      const paid = due.filter((_, i) => i % 2 === 0);
      const left = due.filter((_, i) => i % 2 === 1);
      const payments: Record<string, number> = {};
      for (const [id, order] of paid) {
        const response = await fetch(`${s.api.baseUrl}/v1/orders/${id}/payment`, {
          method: 'POST',
          headers: { authorization: tokens(s.stack.secret).shopper(order.userId), 'content-type': 'application/json' },
          body: JSON.stringify({ paymentRef: `drill-${id}` }),
        });
        const body = (await response.json().catch(() => ({}))) as { code?: string };
        const label = `${response.status}${body.code === undefined ? '' : ` ${body.code}`}`;
        payments[label] = (payments[label] ?? 0) + 1;
      }
      drill.check('payments in the stretched window succeed', paid.length > 0 && payments['200'] === paid.length, `answers: ${JSON.stringify(payments)}`);
      const leftIds = left.map(([id]) => id);
      const allExpired = await waitStatus(s.stack.databaseUrl, leftIds, 'expired', OUTAGE_MS + WINDOW_SECONDS * 1000 + 15_000);
      drill.recoveryMs = allExpired ? drill.now() - endedAt : null;
      drill.event(allExpired ? `the ${left.length} unpaid orders expired` : 'the unpaid orders did not all expire');
      const late = await expiredEarly(s.stack.databaseUrl, leftIds, endedAt - startedAt);
      drill.check(
        'each unpaid order expired no earlier than its deadline stretched by the outage',
        late.early === 0 && late.expired === left.length,
        `${late.expired} expired, ${late.early} before created + window + outage`,
      );
      drill.figures['outage length (ms)'] = endedAt - startedAt;
      await waitPersisted(s.stack.databaseUrl, [...rush.ledger.accepted.keys()], 10_000);
      await finish(drill, s);
    }),
};

async function statuses(databaseUrl: string, ids: readonly string[]): Promise<Map<string, number>> {
  return onDatabase(databaseUrl, async (db) => {
    const result = await db.query<{ status: string; n: string }>('SELECT status, count(*) AS n FROM orders WHERE id::text = ANY($1) GROUP BY status', [ids]);
    return new Map(result.rows.map((row) => [row.status, Number(row.n)]));
  });
}

async function waitStatus(databaseUrl: string, ids: readonly string[], status: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (((await statuses(databaseUrl, ids)).get(status) ?? 0) === ids.length) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

/** Expired orders among ids, and how many expired before created_at + window + stretchMs. */
async function expiredEarly(databaseUrl: string, ids: readonly string[], stretchMs: number): Promise<{ expired: number; early: number }> {
  return onDatabase(databaseUrl, async (db) => {
    const result = await db.query<{ expired: string; early: string }>(
      `SELECT count(*) AS expired,
              count(*) FILTER (WHERE expired_at < created_at + make_interval(secs => $2::double precision / 1000)) AS early
         FROM orders WHERE id::text = ANY($1) AND status = 'expired'`,
      [ids, WINDOW_SECONDS * 1000 + stretchMs - 1_000],
    );
    return { expired: Number(result.rows[0]?.expired ?? 0), early: Number(result.rows[0]?.early ?? 0) };
  });
}
