// Redis key names. Every key of a sale carries the sale id as its hash tag, so each script
// touches one slot and runs unchanged on Redis Cluster. Keys are built here, never in Lua.
export interface SaleKeys {
  readonly sale: string;
  readonly outbox: string;
  readonly deadlines: string;
  item(sku: string): string;
  users(sku: string): string;
  idempotency(userId: string, key: string): string;
  order(orderId: string): string;
  userOrders(userId: string): string;
}

export function saleKeys(prefix: string, saleId: string): SaleKeys {
  const base = `${prefix}:{${saleId}}`;
  return {
    sale: `${base}:sale`,
    outbox: `${base}:outbox`,
    deadlines: `${base}:deadlines`,
    item: (sku) => `${base}:item:${sku}`,
    users: (sku) => `${base}:users:${sku}`,
    idempotency: (userId, key) => `${base}:idem:${userId}:${key}`,
    order: (orderId) => `${base}:order:${orderId}`,
    userOrders: (userId) => `${base}:user-orders:${userId}`,
  };
}

/** Pub/sub channel on which stock reopenings (restock, relist, release) are announced. */
export const stockEventsChannel = (prefix: string) => `${prefix}:stock-events`;
