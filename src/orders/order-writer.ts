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

// `xmax = 0` tells an inserted row from an updated one; an update only ever comes from
// pending_payment (the WHERE below), so the old state of an updated row was live.
const UPSERT = `
WITH input AS (
  SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::text[],
                       $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::text[],
                       $14::timestamptz[], $15::timestamptz[])
    AS t(id, sku, user_id, quantity, unit_price, amount, status, idempotency_key, created_at, expires_at,
         paid_at, payment_ref, cancelled_at, expired_at)
),
written AS (
  INSERT INTO orders AS o (id, sale_id, sku, user_id, quantity, unit_price, amount, status, idempotency_key,
                           created_at, expires_at, paid_at, payment_ref, cancelled_at, expired_at)
  SELECT id, $1, sku, user_id, quantity, unit_price, amount, status, idempotency_key,
         created_at, expires_at, paid_at, payment_ref, cancelled_at, expired_at
  FROM input ORDER BY id
  ON CONFLICT (id) DO UPDATE
    SET status = EXCLUDED.status, paid_at = EXCLUDED.paid_at, payment_ref = EXCLUDED.payment_ref,
        cancelled_at = EXCLUDED.cancelled_at, expired_at = EXCLUDED.expired_at
    WHERE o.status = 'pending_payment' AND EXCLUDED.status <> 'pending_payment'
  RETURNING o.id, o.sku, o.quantity, o.status, o.created_at, (o.xmax = 0) AS inserted
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
SELECT id, status, created_at, inserted, (SELECT count(*) FROM guard) AS guarded FROM written`;

const date = (ms: number | undefined) => (ms === undefined ? null : new Date(ms));

export class OrderWriter {
  constructor(private readonly pool: Pool) {}

  async write(saleId: string, orders: readonly Order[]): Promise<WriteResult> {
    if (orders.length === 0) return { inserted: [], finalised: [] };
    const column = <T>(pick: (order: Order) => T) => orders.map(pick);
    try {
      const { rows } = await this.pool.query<{ id: string; status: Order['status']; created_at: Date; inserted: boolean }>(UPSERT, [
        saleId,
        column((o) => o.id),
        column((o) => o.sku),
        column((o) => o.userId),
        column((o) => o.quantity),
        column((o) => o.unitPrice),
        column((o) => o.amount),
        column((o) => o.status),
        column((o) => o.idempotencyKey),
        column((o) => date(o.createdAt)),
        column((o) => date(o.expiresAt)),
        column((o) => date(o.paidAt)),
        column((o) => o.paymentRef ?? null),
        column((o) => date(o.cancelledAt)),
        column((o) => date(o.expiredAt)),
      ]);
      return {
        inserted: rows.filter((row) => row.inserted).map((row) => ({ id: row.id, createdAt: row.created_at.getTime() })),
        finalised: rows.filter((row) => row.status !== 'pending_payment').map((row) => ({ id: row.id, status: row.status })),
      };
    } catch (error) {
      if ((error as { constraint?: string }).constraint === 'sale_items_sold_within_stock') throw new GuardViolation(saleId, error);
      throw error;
    }
  }
}
