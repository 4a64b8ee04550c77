// The operator's report of a sale: per item what was stocked, sold, paid, given back and earned,
// and for the sale how far Postgres (the record) trails Redis (the decisions).
import type { Pool } from '../db/pool.ts';
import { queuedSale, type PersistQueue } from '../orders/queue.ts';
import type { SaleCatalog, ShardState } from './catalog.ts';
import type { SalesService } from './sales-service.ts';

export interface ItemReport {
  readonly sku: string;
  readonly initialStock: number;
  readonly restocked: number;
  /** The item's total left: Σ available + units in transfer between shards + held (the low-stock level, K > 1). */
  readonly available: number;
  /** Live quantity: pending_payment + paid, as Redis decided it. */
  readonly reserved: number;
  readonly paid: number;
  readonly cancelled: number;
  readonly expired: number;
  readonly revenue: number;
  readonly soldOutAt: number | null;
  readonly delistedAt: number | null;
  readonly state: string;
  /** The item's stock shards (only the report shows them). */
  readonly shards: readonly ShardState[];
}

export interface SaleReportData {
  readonly saleId: string;
  readonly status: string;
  readonly ordersAccepted: number;
  readonly ordersPersisted: number;
  readonly persistLagSeconds: number;
  /** Order states Postgres refused as data, set aside in order_dead_letters. */
  readonly ordersDeadLettered: number;
  /** Persist batches that failed for good (kept in BullMQ's failed set for an operator). */
  readonly persistFailedBatches: number;
  readonly items: readonly ItemReport[];
  /** Orders Redis accepted and Postgres's oversell guard refused: every one of them. */
  readonly ordersRejectedOversell: number;
  /** Those orders, oldest first (at most REJECTED_LISTED): whom to compensate, a coupon each. */
  readonly rejectedOversell: readonly RejectedOversell[];
}

/** An accepted order the record could not hold; `paymentRef` when it was paid (refund it too). */
export interface RejectedOversell {
  readonly orderId: string;
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly amount: number;
  readonly createdAt: number;
  readonly rejectedAt: number;
  readonly paymentRef: string | null;
}

/** Rejections listed in one report; the count is always whole. Beyond this an operator queries
 *  `orders WHERE status = 'rejected_oversell'` directly. */
export const REJECTED_LISTED = 1_000;

interface RejectedRow {
  id: string;
  user_id: string;
  sku: string;
  quantity: number;
  amount: string;
  created_at: Date;
  rejected_at: Date;
  payment_ref: string | null;
  total: string;
}

interface StatusRow {
  sku: string;
  status: string;
  quantity: string;
  amount: string;
}

export class SaleReporter {
  constructor(
    private readonly sales: SalesService,
    private readonly pool: Pool,
    private readonly catalog: SaleCatalog,
    private readonly queues: () => readonly PersistQueue[],
  ) {}

  async report(saleId: string, now = Date.now()): Promise<SaleReportData | undefined> {
    const view = await this.sales.view(saleId, now, { fresh: true });
    if (!view) return undefined;
    const [shards, counts, persisted, queued, rejected] = await Promise.all([
      this.catalog.shards(saleId),
      // sum(int) is bigint and sum(bigint) numeric: both arrive as strings. The stock and price
      // limits (src/sales/sale.ts) keep them within Number.MAX_SAFE_INTEGER, so Number() is exact.
      this.pool.query<StatusRow>(
        'SELECT sku, status, sum(quantity) AS quantity, sum(amount) AS amount FROM orders WHERE sale_id = $1 GROUP BY sku, status',
        [saleId],
      ),
      this.pool.query<{ orders: string; dead: string }>(
        'SELECT (SELECT count(*) FROM orders WHERE sale_id = $1) AS orders, (SELECT count(*) FROM order_dead_letters WHERE sale_id = $1) AS dead',
        [saleId],
      ),
      queuedSale(this.queues(), saleId),
      this.pool.query<RejectedRow>(
        `SELECT id::text, user_id, sku, quantity, amount, created_at, rejected_at, payment_ref, count(*) OVER () AS total
         FROM orders WHERE sale_id = $1 AND status = 'rejected_oversell' ORDER BY created_at, id LIMIT $2`,
        [saleId, REJECTED_LISTED],
      ),
    ]);
    // Every shard counts its own accepted orders and has its own outbox.
    const items = [...shards.values()];
    const ordersAccepted = items.reduce((total, item) => total + item.shards.reduce((sum, shard) => sum + shard.ordersAccepted, 0), 0);
    const heads = items.flatMap((item) => (item.oldestOutboxMs === undefined ? [] : [item.oldestOutboxMs]));
    const ordersPersisted = Number(persisted.rows[0]?.orders ?? 0);
    // The oldest order still on its way: at the head of an outbox, or in a queued batch.
    const candidates = [...heads, queued.oldestPendingOrderAt].filter((ms) => ms !== undefined);
    const oldestUnpersisted = candidates.length > 0 ? Math.min(...candidates) : undefined;
    const sum = (sku: string, status: string, field: 'quantity' | 'amount') =>
      Number(counts.rows.find((row) => row.sku === sku && row.status === status)?.[field] ?? 0);
    return {
      saleId,
      status: view.status,
      ordersAccepted,
      ordersPersisted,
      persistLagSeconds: ordersPersisted >= ordersAccepted || oldestUnpersisted === undefined ? 0 : Math.max(0, now - oldestUnpersisted) / 1000,
      ordersDeadLettered: Number(persisted.rows[0]?.dead ?? 0),
      persistFailedBatches: queued.failedBatches,
      items: view.items.map((item) => ({
        sku: item.sku,
        initialStock: item.initialStock,
        restocked: item.stock.total - item.initialStock,
        available: item.available,
        // Units taken by live orders: everything stocked that is not left.
        reserved: item.stock.total - item.stock.available,
        paid: sum(item.sku, 'paid', 'quantity'),
        cancelled: sum(item.sku, 'cancelled', 'quantity'),
        expired: sum(item.sku, 'expired', 'quantity'),
        revenue: sum(item.sku, 'paid', 'amount'),
        soldOutAt: item.stock.soldOutAt,
        delistedAt: item.stock.delistedAt,
        state: item.state,
        shards: shards.get(item.sku)?.shards ?? [],
      })),
      ordersRejectedOversell: Number(rejected.rows[0]?.total ?? 0),
      rejectedOversell: rejected.rows.map((row) => ({
        orderId: row.id,
        userId: row.user_id,
        sku: row.sku,
        quantity: row.quantity,
        amount: Number(row.amount),
        createdAt: row.created_at.getTime(),
        rejectedAt: row.rejected_at.getTime(),
        paymentRef: row.payment_ref,
      })),
    };
  }
}
