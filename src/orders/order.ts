// The order as the service knows it, and its parsing from a Redis hash (the seam is typed here).
import { optionalNumber } from '../redis/hash-fields.ts';
import type { ReservedOrder } from '../stock/scripts/reserve-order.ts';

// `rejected_oversell`: accepted by Redis, refused by Postgres's oversell guard (Redis had lost
// writes); final, holds no stock, its buyer is compensated (DESIGN.md, "When Postgres refuses").
const ORDER_STATUSES = ['pending_payment', 'paid', 'cancelled', 'expired', 'rejected_oversell'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

/** The order's fields as reserveOrder recorded them, plus where its life has got to since. */
export interface Order extends ReservedOrder {
  readonly status: OrderStatus;
  /** Times in ms since the epoch. */
  readonly paidAt?: number;
  readonly paymentRef?: string;
  readonly cancelledAt?: number;
  readonly expiredAt?: number;
  readonly rejectedAt?: number;
}

/** A just-reserved order: the fields reserveOrder recorded, awaiting payment. */
export function pendingOrder(reserved: ReservedOrder): Order {
  return { ...reserved, status: 'pending_payment' };
}

const ORDER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Order ids are UUIDs (v7); anything else cannot name an order. */
export function isOrderId(value: string): boolean {
  return ORDER_ID.test(value);
}

function isStatus(value: string | undefined): value is OrderStatus {
  return (ORDER_STATUSES as readonly (string | undefined)[]).includes(value);
}

/**
 * An order as its Redis record holds it: also the stock shard that made it (layout 2), where
 * paying or cancelling it must run. Postgres does not keep the shard: an order found only there
 * reached its final state, and no script runs on it again.
 */
export interface LiveOrder extends Order {
  readonly shard: number;
}

const SHARD = /^(?:0|[1-9]\d{0,5})$/;

/** Parses HGETALL of an order hash; undefined for a missing or malformed record (a shard included). */
export function liveOrderFromHash(hash: Record<string, string>): LiveOrder | undefined {
  const order = orderFromHash(hash);
  if (!order || hash.shard === undefined || !SHARD.test(hash.shard)) return undefined;
  return { ...order, shard: Number(hash.shard) };
}

/** Parses HGETALL of an order hash; undefined for a missing or malformed record. */
export function orderFromHash(hash: Record<string, string>): Order | undefined {
  const { id, saleId, sku, userId, status } = hash;
  if (!id || !saleId || !sku || !userId || !isStatus(status)) return undefined;
  const order: Order = {
    id,
    saleId,
    sku,
    userId,
    quantity: Number(hash.quantity),
    unitPrice: Number(hash.unitPrice),
    amount: Number(hash.amount),
    status,
    idempotencyKey: hash.idempotencyKey ? hash.idempotencyKey : null,
    createdAt: Number(hash.createdAt),
    expiresAt: Number(hash.expiresAt),
    paidAt: optionalNumber(hash.paidAt),
    paymentRef: hash.paymentRef || undefined,
    cancelledAt: optionalNumber(hash.cancelledAt),
    expiredAt: optionalNumber(hash.expiredAt),
    rejectedAt: optionalNumber(hash.rejectedAt),
  };
  return order;
}
