// Writes a batch of order states to Postgres in one statement: new orders are inserted, final
// statuses (and stretched payment deadlines) applied, and the per-item `sold` guard moved by
// exactly what changed, all in one transaction. Idempotent: a redelivered batch matches nothing
// and moves nothing.
//
// Should the guard refuse the batch (Redis lost writes and sold the same unit twice), the batch
// is written again order by order, oldest first, and each order the guard refuses is inserted as
// a `rejected_oversell` row instead: final, never counted in `sold`, listed in the report for
// compensation. So every order Redis accepted still becomes exactly one row.
import type { Pool } from '../db/pool.ts';
import type { Order } from './order.ts';

export interface WriteResult {
  /** Orders inserted by this call (not redeliveries), with their creation time. */
  readonly inserted: readonly { id: string; createdAt: number }[];
  /** Orders whose final status this call applied. */
  readonly finalised: readonly { id: string; status: Order['status'] }[];
  /** Orders the oversell guard refused, recorded by this call as `rejected_oversell` rows. */
  readonly rejected: readonly RejectedOrder[];
}

/** What the Redis side needs to take a rejected order off the live books. */
export type RejectedOrder = Pick<Order, 'id' | 'saleId' | 'sku' | 'userId' | 'quantity'>;

const NOTHING: WriteResult = { inserted: [], finalised: [], rejected: [] };

// The batch travels as one JSON parameter (the orders as the service holds them, times in ms since
// the epoch): JSON.stringify is native, where fourteen parallel arrays cost the worker a string
// escape per value and Postgres no less to parse. The answer is one row naming only the exceptions
// — orders not inserted (redeliveries) and those given a final status — rather than a row per order.
// `xmax = 0` tells an inserted row from an updated one; an update only ever comes from
// pending_payment (the WHERE below), so the old state of an updated row was live.
// A pending order's deadline only ever moves later (the payment-outage stretch), so a pending
// state updates the row when it carries a later `expiresAt`, and an old entry delivered late
// cannot move it back.
const INPUT = `input AS (
  SELECT * FROM json_to_recordset($2::json)
    AS t(id uuid, sku text, "userId" text, quantity int, "unitPrice" bigint, amount bigint, status text, "idempotencyKey" text,
         "createdAt" bigint, "expiresAt" bigint, "paidAt" bigint, "paymentRef" text, "cancelledAt" bigint, "expiredAt" bigint)
)`;

const UPSERT = `
WITH ${INPUT},
written AS (
  INSERT INTO orders AS o (id, sale_id, sku, user_id, quantity, unit_price, amount, status, idempotency_key,
                           created_at, expires_at, paid_at, payment_ref, cancelled_at, expired_at)
  SELECT id, $1, sku, "userId", quantity, "unitPrice", amount, status, "idempotencyKey",
         ${at('"createdAt"')}, ${at('"expiresAt"')}, ${at('"paidAt"')}, "paymentRef", ${at('"cancelledAt"')}, ${at('"expiredAt"')}
  FROM input ORDER BY id
  ON CONFLICT (id) DO UPDATE
    SET status = EXCLUDED.status, paid_at = EXCLUDED.paid_at, payment_ref = EXCLUDED.payment_ref,
        cancelled_at = EXCLUDED.cancelled_at, expired_at = EXCLUDED.expired_at,
        expires_at = GREATEST(o.expires_at, EXCLUDED.expires_at)
    WHERE o.status = 'pending_payment' AND (EXCLUDED.status <> 'pending_payment' OR EXCLUDED.expires_at > o.expires_at)
  RETURNING o.id, o.sku, o.quantity, o.status, (o.xmax = 0) AS inserted
),
delta AS (
  SELECT sku, SUM(quantity * ((status IN ('pending_payment', 'paid'))::int - (NOT inserted)::int)) AS change
  FROM written GROUP BY sku
),
guard AS (
  UPDATE sale_items si SET sold = si.sold + delta.change
  FROM delta WHERE si.sale_id = $1 AND si.sku = delta.sku AND delta.change <> 0
  RETURNING si.sku
)
SELECT ARRAY(SELECT i.id::text FROM input i WHERE NOT EXISTS (SELECT 1 FROM written w WHERE w.id = i.id AND w.inserted)) AS not_inserted,
       ARRAY(SELECT id::text FROM written WHERE status <> 'pending_payment') AS finalised,
       (SELECT count(*) FROM guard) AS guarded`;

// One order the guard refused, as a row of its own: whatever live state Redis had (pending, or
// already paid — its payment then kept for the refund), status `rejected_oversell`. Only an
// insert can trip the guard (an update from pending never adds units), so the row did not exist;
// a racing writer of the same order makes this a no-op.
const REJECT = `
WITH ${INPUT}
INSERT INTO orders (id, sale_id, sku, user_id, quantity, unit_price, amount, status, idempotency_key,
                    created_at, expires_at, paid_at, payment_ref, rejected_at)
SELECT id, $1, sku, "userId", quantity, "unitPrice", amount, 'rejected_oversell', "idempotencyKey",
       ${at('"createdAt"')}, ${at('"expiresAt"')}, ${at('"paidAt"')}, "paymentRef", now()
FROM input
ON CONFLICT (id) DO NOTHING
RETURNING id::text`;

/** ms since the epoch → timestamptz, exactly (interval arithmetic is in whole microseconds). */
function at(column: string): string {
  return `'epoch'::timestamptz + ${column} * interval '1 millisecond'`;
}

const LIVE: ReadonlySet<string> = new Set(['pending_payment', 'paid']);

function isGuardViolation(error: unknown): boolean {
  return (error as { constraint?: string } | null)?.constraint === 'sale_items_sold_within_stock';
}

export class OrderWriter {
  constructor(private readonly pool: Pool) {}

  /** Throws a data error (SQLSTATE 22/23) or a transient failure; never the oversell guard. */
  async write(saleId: string, orders: readonly Order[]): Promise<WriteResult> {
    if (orders.length === 0) return NOTHING;
    try {
      return await this.upsert(saleId, orders);
    } catch (error) {
      if (!isGuardViolation(error)) throw error;
      return await this.writeEachAlone(saleId, orders);
    }
  }

  private async upsert(saleId: string, orders: readonly Order[]): Promise<WriteResult> {
    const { rows } = await this.pool.query<{ not_inserted: string[]; finalised: string[] }>(UPSERT, [saleId, JSON.stringify(orders)]);
    const notInserted = new Set(rows[0]?.not_inserted);
    const finalised = new Set(rows[0]?.finalised);
    return {
      inserted: orders.filter((o) => !notInserted.has(o.id)).map((o) => ({ id: o.id, createdAt: o.createdAt })),
      finalised: orders.filter((o) => finalised.has(o.id)).map((o) => ({ id: o.id, status: o.status })),
      rejected: [],
    };
  }

  /**
   * The slow path, taken only when the guard refused the batch: every order on its own, those that
   * give units back first (they make room), then the live ones oldest first, so the earliest
   * buyers keep the stock there is. A data error still throws, as from the batch.
   */
  private async writeEachAlone(saleId: string, orders: readonly Order[]): Promise<WriteResult> {
    const ordered = [...orders].sort((a, b) => Number(LIVE.has(a.status)) - Number(LIVE.has(b.status)) || a.createdAt - b.createdAt);
    const inserted: { id: string; createdAt: number }[] = [];
    const finalised: { id: string; status: Order['status'] }[] = [];
    const rejected: RejectedOrder[] = [];
    for (const order of ordered) {
      try {
        const one = await this.upsert(saleId, [order]);
        inserted.push(...one.inserted);
        finalised.push(...one.finalised);
      } catch (error) {
        if (!isGuardViolation(error)) throw error;
        const { rowCount } = await this.pool.query(REJECT, [saleId, JSON.stringify([order])]);
        if (rowCount === 1) rejected.push({ id: order.id, saleId, sku: order.sku, userId: order.userId, quantity: order.quantity });
      }
    }
    return { inserted, finalised, rejected };
  }
}
