// Sales in Postgres, the system of record: what operators created, restocked and closed.
import type { Pool } from '../db/pool.ts';
import { stockShardsOf, type SaleDefinition, type SaleItemDefinition } from './sale.ts';

export interface StoredSale extends SaleDefinition {
  readonly closedAt: number | null;
  readonly items: readonly (SaleItemDefinition & { readonly restocked: number })[];
}

/** An operator's last switch of an item (delist or relist), recorded for rebuilds. */
export type OperatorListing = 'delisted' | 'relisted';

/** A row of `sales` as `SELECT *` returns it (tests read Postgres through the same shape). */
export interface SaleRow {
  id: string;
  name: string;
  starts_at: Date;
  ends_at: Date;
  currency: string;
  payment_window_seconds: number;
  closed_at: Date | null;
}

/** A row of `sale_items` as `SELECT *` returns it. */
export interface SaleItemRow {
  sale_id: string;
  sku: string;
  name: string;
  unit_price: string;
  initial_stock: number;
  restocked: number;
  per_user_limit: number;
  low_stock_percent: string | null;
  low_stock_units: number | null;
  stock_shards: number;
}

/** What a list of sales shows of each; times in ms since the epoch. */
interface SaleSummary {
  readonly id: string;
  readonly name: string;
  readonly startsAt: number;
  readonly endsAt: number;
  readonly paymentWindowSeconds: number;
  readonly closedAt: number | null;
}

function summaryFromRow(row: SaleRow): SaleSummary {
  return {
    id: row.id,
    name: row.name,
    startsAt: row.starts_at.getTime(),
    endsAt: row.ends_at.getTime(),
    paymentWindowSeconds: row.payment_window_seconds,
    closedAt: row.closed_at?.getTime() ?? null,
  };
}

function itemFromRow(row: SaleItemRow): SaleItemDefinition & { restocked: number } {
  const lowStock =
    row.low_stock_units !== null ? { units: row.low_stock_units } : row.low_stock_percent !== null ? { percent: Number(row.low_stock_percent) } : undefined;
  return {
    sku: row.sku,
    name: row.name,
    unitPrice: Number(row.unit_price),
    stock: row.initial_stock,
    restocked: row.restocked,
    perUserLimit: row.per_user_limit,
    lowStock,
    stockShards: row.stock_shards,
  };
}

// migrations/0002_limits_and_dead_letters.sql
const STOCK_LIMIT_CONSTRAINTS = new Set(['sale_items_stock_within_limit', 'sale_items_value_within_limit']);

export class SaleRepository {
  constructor(private readonly pool: Pool) {}

  /** Inserts a sale with its items in one transaction; false when the id is taken. */
  async insert(sale: SaleDefinition): Promise<boolean> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const inserted = await client.query(
        `INSERT INTO sales (id, name, starts_at, ends_at, currency, payment_window_seconds)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
        [sale.id, sale.name, new Date(sale.startsAt), new Date(sale.endsAt), sale.currency, sale.paymentWindowSeconds],
      );
      if (inserted.rowCount === 0) {
        await client.query('ROLLBACK');
        return false;
      }
      const items = sale.items;
      await client.query(
        `INSERT INTO sale_items (sale_id, sku, name, unit_price, initial_stock, per_user_limit, low_stock_percent, low_stock_units, stock_shards)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::int[], $6::int[], $7::numeric[], $8::int[], $9::smallint[])`,
        [
          sale.id,
          items.map((i) => i.sku),
          items.map((i) => i.name),
          items.map((i) => i.unitPrice),
          items.map((i) => i.stock),
          items.map((i) => i.perUserLimit),
          items.map((i) => (i.lowStock && 'percent' in i.lowStock ? i.lowStock.percent : null)),
          items.map((i) => (i.lowStock && 'units' in i.lowStock ? i.lowStock.units : null)),
          items.map((i) => stockShardsOf(i)),
        ],
      );
      await client.query('COMMIT');
      return true;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  async find(saleId: string): Promise<StoredSale | undefined> {
    const sales = await this.pool.query<SaleRow>('SELECT * FROM sales WHERE id = $1', [saleId]);
    const row = sales.rows[0];
    if (!row) return undefined;
    const items = await this.pool.query<SaleItemRow>('SELECT * FROM sale_items WHERE sale_id = $1 ORDER BY sku', [saleId]);
    return {
      ...summaryFromRow(row),
      currency: row.currency,
      items: items.rows.map(itemFromRow),
    };
  }

  /** Whether Postgres holds any order of the sale (orders_by_item_status answers it). */
  async hasOrders(saleId: string): Promise<boolean> {
    const found = await this.pool.query('SELECT 1 FROM orders WHERE sale_id = $1 LIMIT 1', [saleId]);
    return (found.rowCount ?? 0) > 0;
  }

  async list(): Promise<SaleSummary[]> {
    const { rows } = await this.pool.query<SaleRow>('SELECT * FROM sales ORDER BY starts_at DESC, id');
    return rows.map(summaryFromRow);
  }

  /**
   * Records a restock (raising the per-item guard): false when the item is unknown,
   * 'STOCK_LIMIT_EXCEEDED' when the item's CHECKs (total ≤ MAX_ITEM_STOCK, total × unit price ≤
   * MAX_ITEM_VALUE) refuse it — decided by Postgres on the locked row, so concurrent restocks
   * cannot both slip under the limit.
   */
  async addRestock(saleId: string, sku: string, quantity: number): Promise<boolean | 'STOCK_LIMIT_EXCEEDED'> {
    try {
      const result = await this.pool.query('UPDATE sale_items SET restocked = restocked + $3::bigint WHERE sale_id = $1 AND sku = $2', [
        saleId,
        sku,
        quantity,
      ]);
      return result.rowCount === 1;
    } catch (error) {
      if (STOCK_LIMIT_CONSTRAINTS.has(String((error as { constraint?: unknown }).constraint))) return 'STOCK_LIMIT_EXCEEDED';
      throw error;
    }
  }

  /** Records an operator's delist or relist (migrations/0004), so a rebuilt sale shows the item as the operator left it. */
  async recordListing(saleId: string, sku: string, listing: OperatorListing, at: number): Promise<void> {
    await this.pool.query('UPDATE sale_items SET operator_listing = $3, operator_listing_at = $4 WHERE sale_id = $1 AND sku = $2', [
      saleId,
      sku,
      listing,
      new Date(at),
    ]);
  }

  /** Each item's last operator delist or relist; items never switched are absent. */
  async listings(saleId: string): Promise<Map<string, { listing: OperatorListing; at: number }>> {
    const { rows } = await this.pool.query<{ sku: string; operator_listing: OperatorListing; operator_listing_at: Date }>(
      'SELECT sku, operator_listing, operator_listing_at FROM sale_items WHERE sale_id = $1 AND operator_listing IS NOT NULL',
      [saleId],
    );
    return new Map(rows.map((row) => [row.sku, { listing: row.operator_listing, at: row.operator_listing_at.getTime() }]));
  }

  async markClosed(saleId: string, closedAt: number): Promise<void> {
    await this.pool.query('UPDATE sales SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL', [saleId, new Date(closedAt)]);
  }
}
