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
import { reserveOrder } from '../stock/scripts/reserve-order.ts';
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
  // fromMemory: decided by the in-process sold-out mark or attempt count, without running
  // reserveOrder — so it proves nothing about whether the sale or the SKU exists.
  | { readonly kind: 'refused'; readonly code: ReserveRefusal; readonly fromMemory: boolean };

export class Reservations {
  constructor(
    private readonly scripts: Scripts,
    readonly closedItems: ClosedItems = new ClosedItems(),
    /** Attempts per shopper per item per second (RATE_LIMIT_USER_PER_SEC); limit 0 = none. */
    private readonly attempts: AttemptWindow = new AttemptWindow(0),
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
    const reply = await reserveOrder(this.scripts, { saleId, sku, userId, orderId: uuidv7(), idempotencyKey }, { quantity, now, attemptsPerSecond: this.attempts.limit });
    switch (reply.code) {
      case 'REPLAY':
        return { kind: 'replayed', orderId: reply.orderId };
      case 'OK': {
        if (reply.delistedNow) this.closedItems.mark(saleId, sku, 'ITEM_DELISTED', now);
        else if (reply.soldOutNow) this.closedItems.mark(saleId, sku, 'SOLD_OUT', now);
        return { kind: 'accepted', order: pendingOrder(reply.order), availableAfter: reply.availableAfter, delistedNow: reply.delistedNow, soldOutNow: reply.soldOutNow };
      }
      default:
        if (reply.code === 'SOLD_OUT' || reply.code === 'ITEM_DELISTED' || reply.code === 'SALE_ENDED') this.closedItems.mark(saleId, sku, reply.code, now);
        return { kind: 'refused', code: reply.code, fromMemory: false };
    }
  }
}
