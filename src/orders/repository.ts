// Orders in Postgres: reads for the API (an order once it left Redis, a user's history).
import type { Pool } from '../db/pool.ts';
import { isOrderId, type Order, type OrderStatus } from './order.ts';

export interface OrderRow {
  id: string;
  sale_id: string;
  sku: string;
  user_id: string;
  quantity: number;
  unit_price: string;
  amount: string;
  status: OrderStatus;
  idempotency_key: string | null;
  created_at: Date;
  expires_at: Date;
  paid_at: Date | null;
  payment_ref: string | null;
  cancelled_at: Date | null;
  expired_at: Date | null;
  rejected_at: Date | null;
}

export function orderFromRow(row: OrderRow): Order {
  return {
    id: row.id,
    saleId: row.sale_id,
    sku: row.sku,
    userId: row.user_id,
    quantity: row.quantity,
    unitPrice: Number(row.unit_price),
    amount: Number(row.amount),
    status: row.status,
    idempotencyKey: row.idempotency_key,
    createdAt: row.created_at.getTime(),
    expiresAt: row.expires_at.getTime(),
    paidAt: row.paid_at?.getTime(),
    paymentRef: row.payment_ref ?? undefined,
    cancelledAt: row.cancelled_at?.getTime(),
    expiredAt: row.expired_at?.getTime(),
    rejectedAt: row.rejected_at?.getTime(),
  };
}


export class OrderRepository {
  constructor(private readonly pool: Pool) {}

  async find(orderId: string): Promise<Order | undefined> {
    if (!isOrderId(orderId)) return undefined;
    const { rows } = await this.pool.query<OrderRow>('SELECT * FROM orders WHERE id = $1', [orderId]);
    return rows[0] ? orderFromRow(rows[0]) : undefined;
  }

  async listByUser(userId: string, saleId: string | undefined, limit: number): Promise<Order[]> {
    const { rows } = await this.pool.query<OrderRow>(
      `SELECT * FROM orders WHERE user_id = $1 AND ($2::text IS NULL OR sale_id = $2)
       ORDER BY created_at DESC, id DESC LIMIT $3`,
      [userId, saleId ?? null, limit],
    );
    return rows.map(orderFromRow);
  }
}
