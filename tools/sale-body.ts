// The body of POST /v1/admin/sales, for tests, the load kit, the demo and the benchmark: a sale
// active from a minute ago for an hour, unless the overrides say otherwise.
let saleCounter = 0;

export interface SaleItemInput {
  readonly sku: string;
  readonly stock: number;
  readonly perUserLimit?: number;
  readonly unitPrice?: number;
  readonly lowStock?: { readonly percent: number } | { readonly units: number } | undefined;
  /** K: the item's stock shards (absent: the API's default, 1). */
  readonly stockShards?: number;
}

export function saleBody(items: readonly SaleItemInput[], overrides: Record<string, unknown> = {}) {
  const now = Date.now();
  return {
    id: `sale-${process.pid}-${++saleCounter}`,
    name: 'Double 11',
    startsAt: new Date(now - 60_000).toISOString(),
    endsAt: new Date(now + 3_600_000).toISOString(),
    currency: 'CNY',
    paymentWindowSeconds: 900,
    items: items.map((item) => ({
      sku: item.sku,
      name: `Item ${item.sku}`,
      unitPrice: item.unitPrice ?? 399900,
      stock: item.stock,
      perUserLimit: item.perUserLimit ?? 2,
      ...(item.lowStock && { lowStock: item.lowStock }),
      ...(item.stockShards !== undefined && { stockShards: item.stockShards }),
    })),
    ...overrides,
  };
}

export type SaleBody = ReturnType<typeof saleBody>;
