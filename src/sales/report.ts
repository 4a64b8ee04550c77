// The operator's report of a sale: per item what was stocked, sold, paid, given back and earned,
// and for the sale how far Postgres (the record) trails Redis (the decisions).
import type { Pool } from '../db/pool.ts';
import type { PersistQueue } from '../orders/queue.ts';
import type { RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import type { SalesService } from './sales-service.ts';

export interface ItemReport {
  readonly sku: string;
  readonly initialStock: number;
  readonly restocked: number;
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
}

export interface SaleReportData {
  readonly saleId: string;
  readonly status: string;
  readonly ordersAccepted: number;
  readonly ordersPersisted: number;
  readonly persistLagSeconds: number;
  readonly items: readonly ItemReport[];
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
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly queue: () => PersistQueue,
  ) {}

  async report(saleId: string, now = Date.now()): Promise<SaleReportData | undefined> {
    const view = await this.sales.view(saleId, now, { fresh: true });
    if (!view) return undefined;
    const keys = saleKeys(this.prefix, saleId);
    const [accepted, counts, persisted, oldestUnpersisted] = await Promise.all([
      this.redis.hget(keys.sale, 'ordersAccepted'),
      this.pool.query<StatusRow>(
        'SELECT sku, status, sum(quantity) AS quantity, sum(amount) AS amount FROM orders WHERE sale_id = $1 GROUP BY sku, status',
        [saleId],
      ),
      this.pool.query<{ count: string }>('SELECT count(*) FROM orders WHERE sale_id = $1', [saleId]),
      this.oldestUnpersisted(saleId, keys.outbox),
    ]);
    const ordersAccepted = Number(accepted ?? 0);
    const ordersPersisted = Number(persisted.rows[0]?.count ?? 0);
    const sum = (sku: string, status: string, field: 'quantity' | 'amount') =>
      Number(counts.rows.find((row) => row.sku === sku && row.status === status)?.[field] ?? 0);
    return {
      saleId,
      status: view.status,
      ordersAccepted,
      ordersPersisted,
      persistLagSeconds: ordersPersisted >= ordersAccepted || oldestUnpersisted === undefined ? 0 : Math.max(0, now - oldestUnpersisted) / 1000,
      items: view.items.map((item) => ({
        sku: item.sku,
        initialStock: item.initialStock,
        restocked: item.stock.total - item.initialStock,
        available: item.available,
        reserved: item.stock.total - item.stock.available,
        paid: sum(item.sku, 'paid', 'quantity'),
        cancelled: sum(item.sku, 'cancelled', 'quantity'),
        expired: sum(item.sku, 'expired', 'quantity'),
        revenue: sum(item.sku, 'paid', 'amount'),
        soldOutAt: item.stock.soldOutAt,
        delistedAt: item.stock.delistedAt,
        state: item.state,
      })),
    };
  }

  /** Creation time (ms) of the oldest order still on its way: in the outbox, or queued. */
  private async oldestUnpersisted(saleId: string, outbox: string): Promise<number | undefined> {
    const [head] = (await this.redis.xrange(outbox, '-', '+', 'COUNT', 1)) as [string, string[]][];
    const candidates: number[] = head ? [Number(head[0].split('-')[0])] : [];
    const jobs = await this.queue().getJobs(['active', 'waiting', 'delayed'], 0, 99, true);
    for (const job of jobs) {
      const first = job?.data?.saleId === saleId ? job.data.entries[0] : undefined;
      if (first) candidates.push(first.order.createdAt);
    }
    return candidates.length > 0 ? Math.min(...candidates) : undefined;
  }
}
