// The invariant checker: pure judgement of what a run saw (its 201s, unanswered requests, status
// counts) against what the service recorded (admin report, Postgres rows). DESIGN.md's invariants.
import { compareWithRows, unitsBySku, type OrderFacts } from '../tools/exactly-once.ts';
import type { AcceptedOrder } from './recorder.ts';

export type Verdict = 'PASS' | 'FAIL' | 'SKIP';

export interface InvariantResult {
  readonly name: string;
  readonly verdict: Verdict;
  readonly detail: string;
}

export interface ItemTruth {
  readonly sku: string;
  readonly initialStock: number;
  readonly restocked: number;
  readonly perUserLimit: number;
  /** Delisted at or below this many units; undefined when the item has no low-stock rule. */
  readonly lowStockLevel: number | undefined;
}

/** Per item, as the admin report gives it at the end of the run. */
export interface ReportedItem {
  readonly sku: string;
  readonly available: number;
  readonly reserved: number;
}

/** A row of `orders`: the facts the exactly-once check compares, and its status. */
export interface PersistedOrder extends OrderFacts {
  readonly status: string;
}

export interface Evidence {
  readonly items: readonly ItemTruth[];
  /** Every 201 the run received, replays included. */
  readonly orders: readonly AcceptedOrder[];
  /** Requests that got no answer: the service may or may not have accepted them. */
  readonly unanswered: readonly { readonly userId: string; readonly sku: string; readonly quantity: number }[];
  readonly byStatus: Readonly<Record<string, number>>;
  /** undefined when the admin report could not be read. */
  readonly report: readonly ReportedItem[] | undefined;
  /** The sale's rows in Postgres; undefined when Postgres was not reachable (checks that need it are skipped). */
  readonly rows: readonly PersistedOrder[] | undefined;
  readonly maxQuantity: number;
}

const LIVE = new Set(['pending_payment', 'paid']);

export function checkInvariants(evidence: Evidence): InvariantResult[] {
  const distinct = distinctOrders(evidence.orders);
  return [
    noOversell('no oversell (201 answers)', evidence.items, unitsBySku(distinct)),
    evidence.rows === undefined
      ? skip('no oversell (Postgres)', 'no database URL')
      : noOversell('no oversell (Postgres)', evidence.items, unitsBySku(evidence.rows.filter((row) => LIVE.has(row.status)))),
    availableMatches(evidence),
    perUserLimit(evidence, distinct),
    persistedOnce(evidence, distinct),
    noPhantoms(evidence),
    replaysConsistent(evidence),
    no5xx(evidence.byStatus),
    delistHolds(evidence),
  ];
}

export const passed = (results: readonly InvariantResult[]) => results.every((result) => result.verdict !== 'FAIL');

const pass = (name: string, detail: string): InvariantResult => ({ name, verdict: 'PASS', detail });
const fail = (name: string, detail: string): InvariantResult => ({ name, verdict: 'FAIL', detail });
const skip = (name: string, detail: string): InvariantResult => ({ name, verdict: 'SKIP', detail });
const verdict = (name: string, problems: readonly string[], ok: string): InvariantResult =>
  problems.length === 0 ? pass(name, ok) : fail(name, problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; … ${problems.length - 5} more` : ''));

/** One entry per order id (replays answer an order already counted). */
function distinctOrders(orders: readonly AcceptedOrder[]): AcceptedOrder[] {
  const byId = new Map<string, AcceptedOrder>();
  for (const order of orders) if (!byId.has(order.orderId)) byId.set(order.orderId, order);
  return [...byId.values()];
}

const facts = (order: AcceptedOrder): OrderFacts => ({ id: order.orderId, userId: order.userId, sku: order.sku, quantity: order.quantity });

function noOversell(name: string, items: readonly ItemTruth[], live: Map<string, number>): InvariantResult {
  const problems: string[] = [];
  let sold = 0;
  let stock = 0;
  for (const item of items) {
    const units = live.get(item.sku) ?? 0;
    const limit = item.initialStock + item.restocked;
    sold += units;
    stock += limit;
    if (units > limit) problems.push(`${item.sku}: ${units} units accepted, stock ${limit}`);
  }
  for (const sku of live.keys()) if (!items.some((item) => item.sku === sku)) problems.push(`${sku}: orders for an unknown SKU`);
  return verdict(name, problems, `${sold} of ${stock} units sold over ${items.length} SKUs, none above its stock`);
}

function availableMatches(evidence: Evidence): InvariantResult {
  const name = 'available = stock + restocks − live quantity (admin report)';
  if (!evidence.report) return skip(name, 'admin report unavailable');
  const source = evidence.rows?.filter((row) => LIVE.has(row.status));
  if (!source && evidence.unanswered.length > 0) return skip(name, 'no database URL, and some requests went unanswered');
  const live = unitsBySku(source ?? distinctOrders(evidence.orders));
  const problems: string[] = [];
  for (const item of evidence.items) {
    const reported = evidence.report.find((entry) => entry.sku === item.sku);
    const units = live.get(item.sku) ?? 0;
    const expected = item.initialStock + item.restocked - units;
    if (!reported) problems.push(`${item.sku}: missing from the report`);
    else if (reported.available !== expected || reported.reserved !== units) {
      problems.push(`${item.sku}: available ${reported.available} / reserved ${reported.reserved}, expected ${expected} / ${units}`);
    }
  }
  return verdict(name, problems, `all ${evidence.items.length} SKUs agree with ${source ? 'Postgres' : 'the 201 answers'}`);
}

function perUserLimit(evidence: Evidence, distinct: readonly AcceptedOrder[]): InvariantResult {
  const name = 'per-user limit (user + SKU live quantity ≤ perUserLimit)';
  const limits = new Map(evidence.items.map((item) => [item.sku, item.perUserLimit]));
  const problems: string[] = [];
  let pairs = 0;
  const check = (what: string, orders: readonly { userId: string; sku: string; quantity: number }[]) => {
    const held = new Map<string, number>();
    for (const order of orders) {
      const key = `${order.userId}\u0000${order.sku}`;
      held.set(key, (held.get(key) ?? 0) + order.quantity);
    }
    pairs = Math.max(pairs, held.size);
    for (const [key, units] of held) {
      const [userId = '', sku = ''] = key.split('\u0000');
      const limit = limits.get(sku) ?? 0;
      if (units > limit) problems.push(`${what}: ${userId} holds ${units} of ${sku} (limit ${limit})`);
    }
  };
  check('201s', distinct);
  if (evidence.rows) check('Postgres', evidence.rows.filter((row) => LIVE.has(row.status)));
  return verdict(name, problems, `${pairs} (user, SKU) pairs within their limit`);
}

function persistedOnce(evidence: Evidence, distinct: readonly AcceptedOrder[]): InvariantResult {
  const name = 'every 201 persisted exactly once';
  if (!evidence.rows) return skip(name, 'no database URL');
  const { missing, duplicated, mismatched, rejected } = compareWithRows(distinct.map(facts), evidence.rows);
  const problems = [...missing.map((id) => `${id}: 0 rows`), ...duplicated, ...mismatched];
  const rejections = rejected.length > 0 ? `; ${rejected.length} of them rejected_oversell (the guard refused; compensate)` : '';
  return verdict(name, problems, `${distinct.length} orders, each one row with the same user, SKU and quantity${rejections}`);
}

function noPhantoms(evidence: Evidence): InvariantResult {
  const name = 'no phantom rows (every row answers a 201)';
  if (!evidence.rows) return skip(name, 'no database URL');
  const { extra } = compareWithRows(evidence.orders.map(facts), evidence.rows);
  // A request cut off (or timed out) may still have been accepted: its row is no phantom, but
  // each such request can explain one row at most, of the same user, SKU and quantity.
  const pending = new Map<string, number>();
  const shape = (o: { userId: string; sku: string; quantity: number }) => `${o.userId}\u0000${o.sku}\u0000${o.quantity}`;
  for (const attempt of evidence.unanswered) pending.set(shape(attempt), (pending.get(shape(attempt)) ?? 0) + 1);
  const problems: string[] = [];
  let explained = 0;
  for (const row of extra) {
    const left = pending.get(shape(row)) ?? 0;
    if (left > 0) {
      pending.set(shape(row), left - 1);
      explained++;
    } else problems.push(`${row.id} (${row.userId}/${row.sku}×${row.quantity}) answers no 201 and no unanswered request`);
  }
  const note = explained > 0 ? `; ${explained} answer requests cut off unanswered (of ${evidence.unanswered.length})` : '';
  return verdict(name, problems, `${evidence.rows.length} rows${note}`);
}

function replaysConsistent(evidence: Evidence): InvariantResult {
  const name = 'replays return the same order (same user + Idempotency-Key → one orderId)';
  const byKey = new Map<string, Set<string>>();
  const fresh = new Map<string, number>();
  for (const order of evidence.orders) {
    if (!order.replayed) fresh.set(order.orderId, (fresh.get(order.orderId) ?? 0) + 1);
    if (order.key === undefined) continue;
    const key = `${order.userId}\u0000${order.key}`;
    byKey.set(key, (byKey.get(key) ?? new Set()).add(order.orderId));
  }
  const rowIds = new Set(evidence.rows?.map((row) => row.id));
  const problems: string[] = [];
  for (const [key, ids] of byKey) if (ids.size > 1) problems.push(`${key.replace('\u0000', ' key ')} answered ${ids.size} different orders`);
  for (const [id, times] of fresh) if (times > 1) problems.push(`${id} answered as a new order ${times} times`);
  const replays = evidence.orders.filter((order) => order.replayed);
  for (const replay of replays) {
    // The first answer may have been cut off; then the order must at least be on record.
    if (!fresh.has(replay.orderId) && !rowIds.has(replay.orderId)) problems.push(`replay of ${replay.orderId}, an order never answered nor persisted`);
  }
  return verdict(name, problems, `${replays.length} replays over ${byKey.size} keys that made orders`);
}

function no5xx(byStatus: Readonly<Record<string, number>>): InvariantResult {
  const failures = Object.entries(byStatus).filter(([status, count]) => Number(status) >= 500 && count > 0);
  const total = failures.reduce((sum, [, count]) => sum + count, 0);
  return total === 0 ? pass('no 5xx', 'no answer ≥ 500') : fail('no 5xx', failures.map(([status, count]) => `${count}× ${status}`).join(', '));
}

function delistHolds(evidence: Evidence): InvariantResult {
  const name = 'low-stock delist holds (nothing accepted once at or below the level)';
  const ruled = evidence.items.filter((item) => item.lowStockLevel !== undefined);
  if (ruled.length === 0) return skip(name, 'no item has a low-stock rule');
  if (!evidence.report) return skip(name, 'admin report unavailable');
  const problems: string[] = [];
  for (const item of ruled) {
    const level = item.lowStockLevel ?? 0;
    const available = evidence.report.find((entry) => entry.sku === item.sku)?.available;
    // The last order accepted found available > level, so it left at least level − (quantity − 1).
    const floor = Math.max(0, level - (evidence.maxQuantity - 1));
    if (available === undefined) problems.push(`${item.sku}: missing from the report`);
    else if (available < floor) problems.push(`${item.sku}: available ${available}, below ${floor} (level ${level})`);
  }
  return verdict(name, problems, `${ruled.length} SKUs with a rule stopped at or just below their level`);
}
