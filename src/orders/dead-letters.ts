// Order states Postgres refused as data (a NUL in a reference, a value out of range…), set aside
// in order_dead_letters so the rest of their batch still lands and an operator can see them.
import type { Pool } from '../db/pool.ts';
import { escapeUnsafe } from '../text.ts';
import type { Order } from './order.ts';

/**
 * Whether Postgres refused the data itself, so that writing it again can never succeed:
 * SQLSTATE class 22 (data exception: bad encoding, out of range, bad datetime…) and class 23
 * (integrity: a CHECK, a foreign key, NOT NULL). The oversell guard (23514 on
 * sale_items_sold_within_stock) never reaches this: the writer records its refusals as
 * rejected_oversell rows. Anything else — connection loss,
 * shutdown, deadlock, serialization failure, no SQLSTATE at all — is transient and retried.
 */
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

export interface DeadLetter {
  readonly saleId: string;
  readonly order: Order;
  readonly error: unknown;
}

export class DeadLetters {
  constructor(private readonly pool: Pool) {}

  /** Records one refused state; false when it was already recorded (a redelivered batch). */
  async record({ saleId, order, error }: DeadLetter): Promise<boolean> {
    const { code, message } = error as { code?: unknown; message?: unknown };
    const result = await this.pool.query(
      `INSERT INTO order_dead_letters (order_id, status, sale_id, payload, sqlstate, error)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id, status) DO NOTHING`,
      [
        escapeUnsafe(String(order.id)),
        escapeUnsafe(String(order.status)),
        escapeUnsafe(saleId),
        // JSON.stringify writes control characters and lone surrogates as \u escapes.
        JSON.stringify(order),
        typeof code === 'string' ? escapeUnsafe(code) : null,
        escapeUnsafe(String(message ?? error)),
      ],
    );
    return result.rowCount === 1;
  }

  /**
   * Records an outbox entry no order could be read from (so it can leave the stream instead of
   * pinning it); false when already recorded. Keyed by its stream entry, status 'malformed'; its
   * raw fields are kept as JSON, which writes control characters as \u escapes.
   */
  async recordMalformedEntry(saleId: string, streamId: string, fields: readonly string[]): Promise<boolean> {
    const result = await this.pool.query(
      `INSERT INTO order_dead_letters (order_id, status, sale_id, payload, sqlstate, error)
       VALUES ($1, 'malformed', $2, $3, NULL, 'outbox entry could not be parsed as an order')
       ON CONFLICT (order_id, status) DO NOTHING`,
      [escapeUnsafe(`outbox:${saleId}:${streamId}`), escapeUnsafe(saleId), escapeUnsafe(JSON.stringify(fields))],
    );
    return result.rowCount === 1;
  }
}
