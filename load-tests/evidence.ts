// Gathers what the service recorded after a run: waits (bounded) until Postgres holds every
// accepted order, then reads the admin report and the sale's rows for the invariant checker.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { PersistedOrder, ReportedItem } from './invariants.ts';

export interface SaleReport {
  readonly ordersAccepted: number;
  readonly ordersPersisted: number;
  readonly persistLagSeconds: number;
  readonly items: readonly (ReportedItem & { readonly initialStock: number; readonly restocked: number; readonly state: string })[];
}

export interface Recorded {
  readonly report: SaleReport | undefined;
  readonly rows: readonly PersistedOrder[] | undefined;
  /** How long Postgres took to catch up after the last phase (or the bound, if it never did). */
  readonly drainSeconds: number;
  readonly drained: boolean;
}

export async function fetchReport(origin: string, saleId: string, adminToken: string): Promise<SaleReport | undefined> {
  const response = await fetch(`${origin}/v1/admin/sales/${encodeURIComponent(saleId)}/report`, {
    headers: { authorization: adminToken },
    signal: AbortSignal.timeout(5_000),
  });
  return response.ok ? ((await response.json()) as SaleReport) : undefined;
}

async function fetchRows(pool: pg.Pool, saleId: string): Promise<PersistedOrder[]> {
  const { rows } = await pool.query<PersistedOrder>(
    'SELECT id::text AS id, sku, user_id AS "userId", quantity, status FROM orders WHERE sale_id = $1',
    [saleId],
  );
  return rows;
}

export async function gatherRecorded(args: {
  readonly origin: string;
  readonly saleId: string;
  readonly adminToken: string;
  readonly databaseUrl: string | undefined;
  readonly acceptedIds: ReadonlySet<string>;
  readonly timeoutMs: number;
}): Promise<Recorded> {
  const started = Date.now();
  const pool = args.databaseUrl ? new pg.Pool({ connectionString: args.databaseUrl, max: 2 }) : undefined;
  try {
    for (;;) {
      const report = await fetchReport(args.origin, args.saleId, args.adminToken).catch(() => undefined);
      // Rows are read only once the counts say Postgres caught up with Redis (cheap while waiting).
      const counted = report !== undefined && report.ordersPersisted >= report.ordersAccepted;
      const rows = pool && (counted || report === undefined) ? await fetchRows(pool, args.saleId) : undefined;
      const ids = new Set(rows?.map((row) => row.id));
      const drained = counted && (pool === undefined || (rows !== undefined && [...args.acceptedIds].every((id) => ids.has(id))));
      const elapsed = Date.now() - started;
      if (drained || elapsed >= args.timeoutMs) {
        return { report, rows: rows ?? (pool ? await fetchRows(pool, args.saleId) : undefined), drained, drainSeconds: Math.round(elapsed / 100) / 10 };
      }
      await sleep(250);
    }
  } finally {
    await pool?.end();
  }
}
