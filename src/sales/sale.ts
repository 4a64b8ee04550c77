// Sales and their items as operators define them, and the status a shopper sees.
export type LowStockRule = { readonly percent: number } | { readonly units: number };

export interface SaleItemDefinition {
  readonly sku: string;
  readonly name: string;
  readonly unitPrice: number;
  readonly stock: number;
  readonly perUserLimit: number;
  readonly lowStock?: LowStockRule | undefined;
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
