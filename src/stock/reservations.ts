// Deciding order attempts: the typed binding of reserveOrder plus the in-process sold-out fast
// path. One Redis round trip per attempt; none once an item is known to be closed.
import { uuidv7 } from 'uuidv7';
import type { RedisClient } from '../redis/connection.ts';
import type { Order } from '../orders/order.ts';
import { ClosedItems } from './closed-items.ts';
import { saleKeys } from './keys.ts';
import { parseReserveReply, type RefusalCode } from './reserve-outcome.ts';
import { script, type ScriptCommands } from './scripts.ts';

export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
/** An order record outlives its payment deadline by at most this long (see reserveOrder). */
export const ORDER_RETENTION_MS = 24 * 60 * 60 * 1000;

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
  // fromMemory: decided by the in-process sold-out mark, without running reserveOrder.
  | { readonly kind: 'refused'; readonly code: RefusalCode; readonly fromMemory: boolean };

export class Reservations {
  constructor(
    private readonly redis: RedisClient,
    private readonly scripts: ScriptCommands,
    private readonly prefix: string,
    readonly closedItems: ClosedItems = new ClosedItems(),
  ) {}

  async reserve(request: ReserveRequest, now = Date.now()): Promise<Reservation> {
    const { saleId, sku, userId, quantity } = request;
    const idempotencyKey = request.idempotencyKey ?? '';
    const keys = saleKeys(this.prefix, saleId);
    const closed = this.closedItems.get(saleId, sku, now);
    // A keyed attempt on a closed item may be the replay of an order made before it closed:
    // only a key that exists needs the script; the rest are refused after one cheap EXISTS.
    if (closed && (idempotencyKey === '' || (await this.redis.exists(keys.idempotency(userId, idempotencyKey))) === 0)) {
      return { kind: 'refused', code: closed, fromMemory: true };
    }
    const orderId = uuidv7();
    const reply = await script(this.scripts, 'reserveOrder')(
      keys.sale,
      keys.item(sku),
      keys.users(sku),
      keys.idempotency(userId, idempotencyKey || '-'),
      keys.order(orderId),
      keys.outbox,
      keys.deadlines,
      keys.userOrders(userId),
      saleId,
      sku,
      orderId,
      userId,
      quantity,
      now,
      idempotencyKey,
      IDEMPOTENCY_TTL_SECONDS,
      ORDER_RETENTION_MS,
    );
    const outcome = parseReserveReply(reply);
    switch (outcome.kind) {
      case 'refused':
        if (outcome.code === 'SOLD_OUT' || outcome.code === 'ITEM_DELISTED') this.closedItems.mark(saleId, sku, outcome.code, now);
        if (outcome.code === 'SALE_ENDED') this.closedItems.mark(saleId, undefined, 'SALE_ENDED', now);
        return { kind: 'refused', code: outcome.code, fromMemory: false };
      case 'replayed':
        return outcome;
      case 'accepted': {
        if (outcome.delistedNow) this.closedItems.mark(saleId, sku, 'ITEM_DELISTED', now);
        else if (outcome.soldOutNow) this.closedItems.mark(saleId, sku, 'SOLD_OUT', now);
        const order: Order = {
          id: orderId,
          saleId,
          sku,
          userId,
          quantity,
          unitPrice: outcome.unitPrice,
          amount: outcome.unitPrice * quantity,
          status: 'pending_payment',
          idempotencyKey: idempotencyKey || null,
          createdAt: now,
          expiresAt: outcome.expiresAt,
        };
        return { kind: 'accepted', order, availableAfter: outcome.availableAfter, delistedNow: outcome.delistedNow, soldOutNow: outcome.soldOutNow };
      }
    }
  }
}
