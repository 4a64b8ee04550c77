// Writes a batch of order states to Postgres in one statement: new orders are inserted, final
// statuses applied, and the per-item `sold` guard moved by exactly what changed, all in one
// transaction. Idempotent: a redelivered batch matches nothing and moves nothing.
import type { Pool } from '../db/pool.ts';
import type { Order } from './order.ts';

export interface WriteResult {
  /** Orders inserted by this call (not redeliveries), with their creation time. */
  readonly inserted: readonly { id: string; createdAt: number }[];
  /** Orders whose final status this call applied. */
  readonly finalised: readonly { id: string; status: Order['status'] }[];
}

export class GuardViolation extends Error {
  constructor(readonly saleId: string, cause: unknown) {
    super(`persisting would oversell an item of sale ${saleId} (sale_items_sold_within_stock)`, { cause });
    this.name = 'GuardViolation';
  }
}

// The batch travels as one JSON parameter (the orders as the service holds them, times in ms since
// the epoch): JSON.stringify is native, where fourteen parallel arrays cost the worker a string
// escape per value and Postgres no less to parse. The answer is one row naming only the exceptions
// — orders not inserted (redeliveries) and those given a final status — rather than a row per order.
// `xmax = 0` tells an inserted row from an updated one; an update only ever comes from
// pending_payment (the WHERE below), so the old state of an updated row was live.
const UPSERT = `
WITH input AS (
  SELECT * FROM json_to_recordset($2::json)
    AS t(id uuid, sku text, "userId" text, quantity int, "unitPrice" bigint, amount bigint, status text, "idempotencyKey" text,
         "createdAt" bigint, "expiresAt" bigint, "paidAt" bigint, "paymentRef" text, "cancelledAt" bigint, "expiredAt" bigint)
),
written AS (
  INSERT INTO orders AS o (id, sale_id, sku, user_id, quantity, unit_price, amount, status, idempotency_key,
                           created_at, expires_at, paid_at, payment_ref, cancelled_at, expired_at)
  SELECT id, $1, sku, "userId", quantity, "unitPrice", amount, status, "idempotencyKey",
         ${at('"createdAt"')}, ${at('"expiresAt"')}, ${at('"paidAt"')}, "paymentRef", ${at('"cancelledAt"')}, ${at('"expiredAt"')}
  FROM input ORDER BY id
  ON CONFLICT (id) DO UPDATE
    SET status = EXCLUDED.status, paid_at = EXCLUDED.paid_at, payment_ref = EXCLUDED.payment_ref,
        cancelled_at = EXCLUDED.cancelled_at, expired_at = EXCLUDED.expired_at
    WHERE o.status = 'pending_payment' AND EXCLUDED.status <> 'pending_payment'
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

/** ms since the epoch → timestamptz, exactly (interval arithmetic is in whole microseconds). */
function at(column: string): string {
  return `'epoch'::timestamptz + ${column} * interval '1 millisecond'`;
}

export class OrderWriter {
  constructor(private readonly pool: Pool) {}

  async write(saleId: string, orders: readonly Order[]): Promise<WriteResult> {
    if (orders.length === 0) return { inserted: [], finalised: [] };
    try {
      const { rows } = await this.pool.query<{ not_inserted: string[]; finalised: string[] }>(UPSERT, [saleId, JSON.stringify(orders)]);
      const notInserted = new Set(rows[0]?.not_inserted);
      const finalised = new Set(rows[0]?.finalised);
      return {
        inserted: orders.filter((o) => !notInserted.has(o.id)).map((o) => ({ id: o.id, createdAt: o.createdAt })),
        finalised: orders.filter((o) => finalised.has(o.id)).map((o) => ({ id: o.id, status: o.status })),
      };
    } catch (error) {
      if ((error as { constraint?: string }).constraint === 'sale_items_sold_within_stock') throw new GuardViolation(saleId, error);
      throw error;
    }
  }
}
