// Sales and their items as operators define them, and the status a shopper sees.
import type { ShardRef } from '../stock/keys.ts';

export type LowStockRule = { readonly percent: number } | { readonly units: number };

export interface SaleItemDefinition {
  readonly sku: string;
  readonly name: string;
  readonly unitPrice: number;
  readonly stock: number;
  readonly perUserLimit: number;
  readonly lowStock?: LowStockRule | undefined;
  /** K: the item's stock shards, each in its own Redis slot (fixed at creation; default 1). */
  readonly stockShards?: number | undefined;
}

export interface SaleDefinition {
  readonly id: string;
  readonly name: string;
  /** ms since the epoch */
  readonly startsAt: number;
  readonly endsAt: number;
  readonly currency: string;
  readonly paymentWindowSeconds: number;
  readonly items: readonly SaleItemDefinition[];
}

/** K of an item: how many stock shards it was created with. */
export function stockShardsOf(item: Pick<SaleItemDefinition, 'stockShards'>): number {
  return item.stockShards ?? 1;
}

/** Every stock shard of every item of the sale. */
export function shardRefsOf(sale: Pick<SaleDefinition, 'id' | 'items'>): ShardRef[] {
  return sale.items.flatMap((item) => {
    const shards = stockShardsOf(item);
    return Array.from({ length: shards }, (_, shard) => ({ saleId: sale.id, sku: item.sku, shard, shards }));
  });
}

export type SaleStatus = 'scheduled' | 'active' | 'ended' | 'closed';
export type ItemState = 'listed' | 'delisted' | 'sold_out';
export type DelistReason = 'low_stock' | 'operator';

/** What Redis holds of an item at one moment. */
export interface ItemStock {
  readonly available: number;
  /** initial stock + restocks */
  readonly total: number;
  readonly delisted: DelistReason | null;
  readonly soldOutAt: number | null;
  readonly delistedAt: number | null;
}

export function saleStatus(sale: { startsAt: number; endsAt: number }, closedAt: number | null, now: number): SaleStatus {
  if (closedAt !== null) return 'closed';
  if (now < sale.startsAt) return 'scheduled';
  return now < sale.endsAt ? 'active' : 'ended';
}

export function itemState(stock: Pick<ItemStock, 'available' | 'delisted'>): ItemState {
  if (stock.delisted) return 'delisted';
  return stock.available <= 0 ? 'sold_out' : 'listed';
}

// Limits that keep every count and sum inside Postgres's integer columns and JavaScript's safe
// integers (migrations/0002_limits_and_dead_letters.sql holds the same numbers as CHECKs).
/** Initial stock plus every restock of one item. Fits int4 with room for one more restock. */
export const MAX_ITEM_STOCK = 1_000_000_000;
/** K of one item (migrations/0003_stock_shards.sql holds the same CHECK). */
export const MAX_STOCK_SHARDS = 64;
/** Minor units per unit. */
export const MAX_UNIT_PRICE = 10_000_000_000;
/** One order's quantity and one shopper's per-item limit. */
export const MAX_ORDER_QUANTITY = 10_000;
/** Total stock × unit price: the largest revenue an item can report, exact as a JS number. */
export const MAX_ITEM_VALUE = Number.MAX_SAFE_INTEGER;
