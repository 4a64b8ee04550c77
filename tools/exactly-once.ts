// The exactly-once check (DESIGN.md invariants 3 and 4): the orders answered 201 against the rows
// Postgres holds — each accepted order exactly one row with the same user, SKU and quantity,
// either a live order or a counted rejection (`rejected_oversell`: Postgres's guard refused what
// Redis accepted after losing writes) — and no row that answers no order. Pure; the load kit's
// invariants, the fault tests and the drills judge with it.

export interface OrderFacts {
  /** The order id (orderId of the 201, id of the row). */
  readonly id: string;
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  /** The row's status, when the caller read it: `rejected_oversell` rows are counted apart. */
  readonly status?: string;
}

export const REJECTED_OVERSELL = 'rejected_oversell';

export interface ExactlyOnce {
  /** Accepted orders with no row. */
  readonly missing: readonly string[];
  /** Accepted orders with more than one row, e.g. "o1: 2 rows". */
  readonly duplicated: readonly string[];
  /** Accepted orders whose row says another user, SKU or quantity, described. */
  readonly mismatched: readonly string[];
  /** Rows that answer no accepted order. */
  readonly extra: readonly OrderFacts[];
  /** Accepted orders whose one row is a rejection: not a failure of invariant 3, but every one
   *  a buyer to compensate, so the count is reported (0 unless Redis lost writes). */
  readonly rejected: readonly string[];
}

const describe = (o: OrderFacts) => `${o.userId}/${o.sku}×${o.quantity}`;

/** Accepted orders may repeat (replays answer an order already counted): each id counts once. */
export function compareWithRows(accepted: Iterable<OrderFacts>, rows: Iterable<OrderFacts>): ExactlyOnce {
  const rowsById = new Map<string, OrderFacts[]>();
  for (const row of rows) rowsById.set(row.id, [...(rowsById.get(row.id) ?? []), row]);
  const orders = new Map<string, OrderFacts>();
  for (const order of accepted) if (!orders.has(order.id)) orders.set(order.id, order);
  const missing: string[] = [];
  const duplicated: string[] = [];
  const mismatched: string[] = [];
  const rejected: string[] = [];
  for (const order of orders.values()) {
    const found = rowsById.get(order.id) ?? [];
    const [row] = found;
    if (row === undefined) missing.push(order.id);
    else if (found.length > 1) duplicated.push(`${order.id}: ${found.length} rows`);
    else if (row.userId !== order.userId || row.sku !== order.sku || row.quantity !== order.quantity) {
      mismatched.push(`${order.id}: row says ${describe(row)}, the 201 said ${describe(order)}`);
    } else if (row.status === REJECTED_OVERSELL) rejected.push(order.id);
  }
  const extra = [...rowsById.values()].flat().filter((row) => !orders.has(row.id));
  return { missing, duplicated, mismatched, extra, rejected };
}

/** The orders' quantities summed per SKU. */
export function unitsBySku(orders: Iterable<{ readonly sku: string; readonly quantity: number }>): Map<string, number> {
  const units = new Map<string, number>();
  for (const order of orders) units.set(order.sku, (units.get(order.sku) ?? 0) + order.quantity);
  return units;
}
