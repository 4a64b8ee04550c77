// Domain values → response bodies (ISO times, the API's field names).
import type { Order } from '../orders/order.ts';
import type { ItemView, SaleView } from '../sales/sales-service.ts';
import type { OrderBodyType } from './schemas.ts';

const iso = (ms: number) => new Date(ms).toISOString();

export function presentOrder(order: Order): OrderBodyType {
  return {
    orderId: order.id,
    saleId: order.saleId,
    sku: order.sku,
    userId: order.userId,
    quantity: order.quantity,
    unitPrice: order.unitPrice,
    amount: order.amount,
    status: order.status,
    createdAt: iso(order.createdAt),
    expiresAt: iso(order.expiresAt),
    ...(order.paidAt !== undefined && { paidAt: iso(order.paidAt) }),
    ...(order.cancelledAt !== undefined && { cancelledAt: iso(order.cancelledAt) }),
    ...(order.expiredAt !== undefined && { expiredAt: iso(order.expiredAt) }),
    ...(order.rejectedAt !== undefined && { rejectedAt: iso(order.rejectedAt) }),
  };
}

export function presentItem(item: ItemView) {
  return {
    sku: item.sku,
    name: item.name,
    unitPrice: item.unitPrice,
    perUserLimit: item.perUserLimit,
    available: item.available,
    state: item.state,
  };
}

export function presentSale(view: SaleView, now = Date.now()) {
  const { sale } = view;
  return {
    id: sale.id,
    name: sale.name,
    status: view.status,
    startsAt: iso(sale.startsAt),
    endsAt: iso(sale.endsAt),
    serverTime: iso(now),
    currency: sale.currency,
    items: view.items.map(presentItem),
  };
}

export { iso };
