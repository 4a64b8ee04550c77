// Outbox entries: every state change of an order is appended to its sale's stream with the
// order's full state, so the worker can upsert it whatever order the entries arrive in.
import type { Order } from './order.ts';
import { orderFromHash } from './order.ts';

export interface OutboxEntry {
  /** Stream entry id, e.g. 1700000000000-0 */
  readonly streamId: string;
  readonly order: Order;
}

/** A job's payload: one sale's entries, in stream order. */
export interface PersistBatch {
  readonly saleId: string;
  readonly entries: readonly OutboxEntry[];
}

/** Entries as XREADGROUP/XAUTOCLAIM return them: [id, [field, value, …]]. */
export type RawStreamEntries = [string, string[]][];

/** Parses stream entries — the one place that knows what the reserve and lifecycle scripts
 *  write into the outbox; malformed ones are returned apart. */
export function parseStreamEntries(saleId: string, raw: readonly [string, string[]][]): { entries: OutboxEntry[]; malformed: string[] } {
  const entries: OutboxEntry[] = [];
  const malformed: string[] = [];
  for (const [streamId, fields] of raw) {
    const hash: Record<string, string> = { saleId };
    for (let i = 0; i + 1 < fields.length; i += 2) hash[fields[i]!] = fields[i + 1]!;
    const order = orderFromHash(hash);
    if (order) entries.push({ streamId, order });
    else malformed.push(streamId);
  }
  return { entries, malformed };
}

const STATUS_RANK = { pending_payment: 0, paid: 1, cancelled: 1, expired: 1, rejected_oversell: 1 } as const;

/**
 * One row per order, the most advanced state winning (a final status beats pending_payment; of
 * two pending states the later, which may carry a deadline stretched by a payment outage),
 * sorted by id so concurrent batches lock rows in the same order.
 */
export function latestPerOrder(entries: readonly OutboxEntry[]): Order[] {
  const byId = new Map<string, Order>();
  for (const { order } of entries) {
    const seen = byId.get(order.id);
    if (!seen || STATUS_RANK[order.status] >= STATUS_RANK[seen.status]) byId.set(order.id, order);
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export function isBatch(value: unknown): value is PersistBatch {
  if (typeof value !== 'object' || value === null) return false;
  const { saleId, entries } = value as Record<string, unknown>;
  return (
    typeof saleId === 'string' &&
    Array.isArray(entries) &&
    entries.every((entry: unknown) => {
      const order = (entry as { order?: Record<string, unknown> } | null)?.order;
      return typeof order?.id === 'string' && typeof order.sku === 'string' && typeof order.status === 'string' && Number.isInteger(order.quantity);
    })
  );
}
