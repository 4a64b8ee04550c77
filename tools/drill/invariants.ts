// The drill's verdict, read from the system of record: every 201 is exactly one Postgres row
// (tools/exactly-once.ts), no row answers no 201, each item's `sold` is its rows' live quantity and
// never above its stock, no shopper holds more than the per-user limit, and Redis (the admin
// report's available / reserved) agrees with Postgres. Polled until it holds or the time is up:
// the persister may still be draining a backlog the fault left behind.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { AcceptedOrder } from '../../test/integration/faults/harness.ts';
import { compareWithRows, type ExactlyOnce } from '../exactly-once.ts';
import { tokens } from '../tokens.ts';
import type { Check } from './report.ts';

const LIVE = new Set(['pending_payment', 'paid']);

interface Row {
  id: string;
  userId: string;
  sku: string;
  quantity: number;
  status: string;
}

interface ItemRow {
  sku: string;
  stock: number;
  sold: number;
  perUserLimit: number;
}

interface Snapshot {
  readonly comparison: ExactlyOnce;
  readonly rows: readonly Row[];
  readonly items: readonly ItemRow[];
  /** From the admin report (Redis): per SKU. */
  readonly redis: ReadonlyMap<string, { available: number; reserved: number }>;
  /** The report's answer when it was not a 200 (status and code, or the error), for the verdict's detail. */
  readonly redisRefusal: string | undefined;
}

export interface InvariantResult {
  readonly checks: Check[];
  /** 201s with no row. */
  readonly lost: number;
  readonly missing: readonly string[];
  /** How long Postgres took to hold every 201 (or the whole timeout when it never did). */
  readonly settledMs: number;
  readonly rows: number;
}

export interface InvariantInput {
  readonly databaseUrl: string;
  readonly apiBaseUrl: string;
  readonly secret: string;
  readonly saleId: string;
  readonly accepted: ReadonlyMap<string, AcceptedOrder>;
  readonly timeoutMs: number;
  /**
   * 201s the fault itself may have destroyed (accepted, not yet persisted when Redis lost its
   * data): their missing rows are reported, not failed.
   */
  readonly mayBeMissing?: ReadonlySet<string>;
}

export async function checkInvariants(input: InvariantInput): Promise<InvariantResult> {
  const started = Date.now();
  const db = new pg.Client({ connectionString: input.databaseUrl, connectionTimeoutMillis: 3_000 });
  db.on('error', () => undefined);
  await db.connect();
  try {
    let snapshot: Snapshot;
    for (;;) {
      snapshot = await readSnapshot(db, input);
      if (judge(snapshot, input).every((check) => check.ok) || Date.now() - started > input.timeoutMs) break;
      await sleep(250);
    }
    return {
      checks: judge(snapshot, input),
      lost: snapshot.comparison.missing.length,
      missing: snapshot.comparison.missing,
      settledMs: Date.now() - started,
      rows: snapshot.rows.length,
    };
  } finally {
    await db.end().catch(() => undefined);
  }
}

async function readSnapshot(db: pg.Client, input: InvariantInput): Promise<Snapshot> {
  const orders = await db.query<Row>(
    'SELECT id::text AS id, user_id AS "userId", sku, quantity, status FROM orders WHERE sale_id = $1',
    [input.saleId],
  );
  const items = await db.query<ItemRow>(
    `SELECT sku, initial_stock + restocked AS stock, sold, per_user_limit AS "perUserLimit"
       FROM sale_items WHERE sale_id = $1 ORDER BY sku`,
    [input.saleId],
  );
  const comparison = compareWithRows(
    [...input.accepted].map(([id, order]) => ({ id, ...order })),
    orders.rows,
  );
  return { comparison, rows: orders.rows, items: items.rows, ...(await redisView(input)) };
}

/** available / reserved per SKU as the service (Redis) reports them; empty, with why, when it does not answer. */
async function redisView(input: InvariantInput): Promise<Pick<Snapshot, 'redis' | 'redisRefusal'>> {
  try {
    const response = await fetch(`${input.apiBaseUrl}/v1/admin/sales/${encodeURIComponent(input.saleId)}/report`, {
      headers: { authorization: tokens(input.secret).admin() },
      signal: AbortSignal.timeout(5_000),
    });
    if (response.status !== 200) {
      const code = ((await response.json().catch(() => ({}))) as { code?: unknown }).code;
      return { redis: new Map(), redisRefusal: `${response.status}${typeof code === 'string' ? ` ${code}` : ''}` };
    }
    const body = (await response.json()) as { items: { sku: string; available: number; reserved: number }[] };
    return { redis: new Map(body.items.map((item) => [item.sku, { available: item.available, reserved: item.reserved }])), redisRefusal: undefined };
  } catch (error) {
    return { redis: new Map(), redisRefusal: error instanceof Error ? error.message : String(error) };
  }
}

function judge(snapshot: Snapshot, input: InvariantInput): Check[] {
  const { comparison, rows, items, redis, redisRefusal } = snapshot;
  const unexpectedMissing = comparison.missing.filter((id) => !(input.mayBeMissing?.has(id) ?? false));
  const sample = (list: readonly string[]) => (list.length === 0 ? '' : ` (e.g. ${list.slice(0, 3).join(', ')})`);
  const live = rows.filter((row) => LIVE.has(row.status));
  const liveBySku = sumBy(live, (row) => row.sku);
  const liveByUser = sumBy(live, (row) => `${row.userId}\u0000${row.sku}`);
  const limitOf = new Map(items.map((item) => [item.sku, item.perUserLimit]));
  const overLimit = [...liveByUser].filter(([key, quantity]) => quantity > (limitOf.get(key.split('\u0000')[1]!) ?? Infinity));
  const maxHeld = Math.max(0, ...liveByUser.values());
  const soldDrift = items.filter((item) => item.sold !== (liveBySku.get(item.sku) ?? 0));
  const oversold = items.filter((item) => item.sold > item.stock);
  const redisDrift = items.filter((item) => {
    const view = redis.get(item.sku);
    return view === undefined || view.available !== item.stock - item.sold || view.reserved !== item.sold;
  });
  return [
    {
      name: 'every 201 is exactly one row (invariant 3)',
      ok: unexpectedMissing.length + comparison.duplicated.length + comparison.mismatched.length === 0,
      detail:
        `${input.accepted.size} accepted, ${comparison.missing.length} without a row${sample(comparison.missing)}` +
        `${input.mayBeMissing === undefined ? '' : ` (${comparison.missing.length - unexpectedMissing.length} of them lost with Redis before they were persisted)`}, ` +
        `${comparison.duplicated.length} with several${sample(comparison.duplicated)}, ${comparison.mismatched.length} mismatched${sample(comparison.mismatched)}`,
    },
    {
      name: 'no row without a 201 (invariant 4)',
      ok: comparison.extra.length === 0,
      detail: `${rows.length} rows, ${comparison.extra.length} answer no 201${sample(comparison.extra.map((row) => row.id))}`,
    },
    {
      name: "each item's sold is its rows' live quantity",
      ok: soldDrift.length === 0,
      detail: items.map((item) => `${item.sku}: sold ${item.sold}, live rows ${liveBySku.get(item.sku) ?? 0}`).join('; '),
    },
    {
      name: 'never oversold (sold ≤ initial + restocked)',
      ok: oversold.length === 0 && items.length > 0,
      detail: items.map((item) => `${item.sku}: ${item.sold} of ${item.stock}`).join('; '),
    },
    {
      name: 'per-user limit held',
      ok: overLimit.length === 0,
      detail: `${liveByUser.size} (shopper, SKU) pairs, most held ${maxHeld}, over the limit ${overLimit.length}${sample(overLimit.map(([key, q]) => `${key.replace('\u0000', '/')}=${q}`))}`,
    },
    {
      name: 'Redis agrees with Postgres (available = stock − sold, reserved = sold)',
      ok: redisDrift.length === 0 && items.length > 0,
      detail: items
        .map((item) => {
          const view = redis.get(item.sku);
          return `${item.sku}: Redis ${view === undefined ? `no answer (${redisRefusal ?? 'no such item'})` : `available ${view.available}, reserved ${view.reserved}`}, Postgres stock ${item.stock} sold ${item.sold}`;
        })
        .join('; '),
    },
  ];
}

function sumBy(rows: readonly Row[], key: (row: Row) => string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const row of rows) sums.set(key(row), (sums.get(key(row)) ?? 0) + row.quantity);
  return sums;
}
