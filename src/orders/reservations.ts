// Deciding order attempts: reserveOrder plus the in-process sold-out fast path, turning an
// accepted reservation into an Order. One Redis round trip per attempt (the attempt limit is
// counted inside it); none once an item is known to be closed or this process alone has seen the
// shopper go over the limit.
import { uuidv7 } from 'uuidv7';
import { AttemptWindow } from '../stock/attempt-window.ts';
import { ClosedItems } from '../stock/closed-items.ts';
import { saleKeys } from '../stock/keys.ts';
import type { ReserveRefusal } from '../stock/scripts/refusals.ts';
import type { Scripts } from '../stock/scripts/registry.ts';
import { reserveOrder, reserveOrderAcked, type ReplicaAck, type ReserveOrderReply } from '../stock/scripts/reserve-order.ts';
import { pendingOrder, type Order } from './order.ts';

export interface ReserveRequest {
  readonly saleId: string;
  readonly sku: string;
  readonly userId: string;
  readonly quantity: number;
  readonly idempotencyKey?: string | undefined;
}

export type Reservation =
  | { readonly kind: 'accepted'; readonly order: Order; readonly availableAfter: number; readonly delistedNow: boolean; readonly soldOutNow: boolean }
  | { readonly kind: 'replayed'; readonly orderId: string }
  // Replica durability: the order was made (or replayed) but fewer replicas than asked acknowledged
  // it in time, so a failover could still lose it; a keyed retry replays it.
  | { readonly kind: 'unacknowledged'; readonly orderId: string; readonly acknowledgedBy: number }
  // fromMemory: decided by the in-process sold-out mark or attempt count, without running
  // reserveOrder — so it proves nothing about whether the sale or the SKU exists.
  | { readonly kind: 'refused'; readonly code: ReserveRefusal; readonly fromMemory: boolean };

export class Reservations {
  constructor(
    private readonly scripts: Scripts,
    readonly closedItems: ClosedItems = new ClosedItems(),
    /** Attempts per shopper per item per second (RATE_LIMIT_USER_PER_SEC); limit 0 = none. */
    private readonly attempts: AttemptWindow = new AttemptWindow(0),
    /** Replica durability: WAIT for this after each reserve; undefined (async) sends the script alone. */
    private readonly replicaAck?: ReplicaAck,
  ) {}

  async reserve(request: ReserveRequest, now = Date.now()): Promise<Reservation> {
    const { saleId, sku, userId, quantity } = request;
    const idempotencyKey = request.idempotencyKey ?? '';
    if (!this.attempts.admit(saleId, sku, userId, now)) return { kind: 'refused', code: 'RATE_LIMITED', fromMemory: true };
    const closed = this.closedItems.get(saleId, sku, now);
    // A keyed attempt on a closed item may be the replay of an order made before it closed:
    // only a key that exists needs the script; the rest are refused after one cheap EXISTS.
    if (closed) {
      const keyExists = idempotencyKey !== '' && (await this.scripts.client.exists(saleKeys(this.scripts.prefix, saleId).idempotency(userId, idempotencyKey))) === 1;
      if (!keyExists) return { kind: 'refused', code: closed, fromMemory: true };
    }
    const keys = { saleId, sku, userId, orderId: uuidv7(), idempotencyKey };
    const args = { quantity, now, attemptsPerSecond: this.attempts.limit };
    let reply: ReserveOrderReply;
    if (this.replicaAck) {
      const acked = await reserveOrderAcked(this.scripts, keys, args, this.replicaAck);
      reply = acked.reply;
      // Refusals change nothing worth waiting for; an order (new or replayed) must be on the replicas.
      if (acked.acknowledgedBy < this.replicaAck.replicas && (reply.code === 'OK' || reply.code === 'REPLAY')) {
        this.noteClosing(reply, saleId, sku, now);
        return { kind: 'unacknowledged', orderId: reply.code === 'OK' ? reply.order.id : reply.orderId, acknowledgedBy: acked.acknowledgedBy };
      }
    } else {
      reply = await reserveOrder(this.scripts, keys, args);
    }
    switch (reply.code) {
      case 'REPLAY':
        return { kind: 'replayed', orderId: reply.orderId };
      case 'OK': {
        this.noteClosing(reply, saleId, sku, now);
        return { kind: 'accepted', order: pendingOrder(reply.order), availableAfter: reply.availableAfter, delistedNow: reply.delistedNow, soldOutNow: reply.soldOutNow };
      }
      default:
        if (reply.code === 'SOLD_OUT' || reply.code === 'ITEM_DELISTED' || reply.code === 'SALE_ENDED') this.closedItems.mark(saleId, sku, reply.code, now);
        return { kind: 'refused', code: reply.code, fromMemory: false };
    }
  }

  // The order that took the last unit (or crossed the low-stock level) closes the item for this process.
  private noteClosing(reply: ReserveOrderReply, saleId: string, sku: string, now: number): void {
    if (reply.code !== 'OK') return;
    if (reply.delistedNow) this.closedItems.mark(saleId, sku, 'ITEM_DELISTED', now);
    else if (reply.soldOutNow) this.closedItems.mark(saleId, sku, 'SOLD_OUT', now);
  }
}
