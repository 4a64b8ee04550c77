// Payment, cancellation and expiry of orders: each one Lua script that changes the order,
// gives back its stock exactly once when it ends unpaid, and appends the new state to the outbox.
// Each runs on the order's own stock shard (the `shard` its record names), found from the order
// id alone: no scan of live sales, and units go back to the shard that sold them.
import { expireDue, type ExpiryShard } from '../stock/scripts/expire-due.ts';
import { payOrder } from '../stock/scripts/pay-order.ts';
import type { OrderChangeRefusal } from '../stock/scripts/refusals.ts';
import type { Scripts } from '../stock/scripts/registry.ts';
import { releaseOrder } from '../stock/scripts/release-order.ts';
import type { LiveOrder, Order } from './order.ts';
import type { LocatedOrder, OrderStore } from './order-store.ts';

export type LifecycleRefusal = OrderChangeRefusal;

export type LifecycleOutcome =
  | { readonly kind: 'done'; readonly order: Order; readonly changed: boolean }
  | { readonly kind: 'refused'; readonly code: LifecycleRefusal };

/** Units an item got back from orders that ended unpaid (one cancel, or a batch of expiries). */
export interface Released {
  readonly saleId: string;
  readonly sku: string;
  readonly units: number;
  readonly orderIds: readonly string[];
}

export interface LifecycleEvents {
  /** Units given back to an item's stock, reported once per order that gave them. */
  onReleased(released: Released, reason: 'cancelled' | 'expired'): void;
  onPaid(order: Order): void;
  /** The item went from sold out to available again: other API processes must forget their mark. */
  onReopened(saleId: string, sku: string): Promise<void>;
}

/** The answer for an order Redis no longer holds: it reached a final state long ago. */
function decideOnFinalOrder(order: Order, action: 'pay' | 'cancel', paymentRef?: string): LifecycleOutcome {
  if (order.status === 'paid') {
    return action === 'pay' && order.paymentRef === paymentRef ? { kind: 'done', order, changed: false } : { kind: 'refused', code: 'ORDER_ALREADY_PAID' };
  }
  if (order.status === 'cancelled') return action === 'cancel' ? { kind: 'done', order, changed: false } : { kind: 'refused', code: 'ORDER_CANCELLED' };
  if (order.status === 'expired') return { kind: 'refused', code: 'ORDER_EXPIRED' };
  if (order.status === 'rejected_oversell') return { kind: 'refused', code: 'ORDER_REJECTED' };
  // A pending order always lives in Redis; finding one only in Postgres is a lost record.
  throw new Error(`pending order ${order.id} is missing from Redis`);
}

/** The payment-outage switch as pay and cancel see it (src/orders/payment-outage.ts). */
export interface PaymentDeadlines {
  /** Whether lateness must not expire orders now. */
  paused(): Promise<boolean>;
}

/** The keys of the order's own shard: the one its record names. */
const orderKeysOf = (order: LiveOrder) => ({ saleId: order.saleId, orderId: order.id, sku: order.sku, shard: order.shard });

export class OrderLifecycle {
  constructor(
    private readonly scripts: Scripts,
    private readonly orders: OrderStore,
    private readonly events: LifecycleEvents,
    private readonly deadlines?: PaymentDeadlines,
  ) {}

  /** Whether a payment outage keeps this order from expiring for lateness. Read only for an order
   *  already past its deadline: the switch matters to no other. */
  private async heldByOutage(order: Order, now: number): Promise<boolean> {
    return now >= order.expiresAt && this.deadlines !== undefined && (await this.deadlines.paused());
  }

  /** The order as its owner (or an operator, userId '') may act on it. */
  private async load(orderId: string, userId: string): Promise<LocatedOrder | undefined> {
    const located = await this.orders.locate(orderId);
    if (!located || (userId !== '' && located.order.userId !== userId)) return undefined;
    return located;
  }

  private async after(order: LiveOrder, changed: boolean): Promise<LifecycleOutcome> {
    const fresh = (await this.orders.fromRedis(order.id)) ?? order;
    return { kind: 'done', order: fresh, changed };
  }

  async pay(orderId: string, userId: string, paymentRef: string, now = Date.now()): Promise<LifecycleOutcome> {
    const loaded = await this.load(orderId, userId);
    if (!loaded) return { kind: 'refused', code: 'ORDER_NOT_FOUND' };
    if (!loaded.inRedis) return decideOnFinalOrder(loaded.order, 'pay', paymentRef);
    const { order } = loaded;
    const outage = await this.heldByOutage(order, now);
    const reply = await payOrder(this.scripts, orderKeysOf(order), { userId, paymentRef, now, outage });
    switch (reply.code) {
      case 'PAID':
      case 'ALREADY_PAID': {
        const outcome = await this.after(order, reply.code === 'PAID');
        if (reply.code === 'PAID' && outcome.kind === 'done') this.events.onPaid(outcome.order);
        return outcome;
      }
      case 'EXPIRED_NOW':
        await this.released(order, 'expired', reply.reopened);
        return { kind: 'refused', code: 'ORDER_EXPIRED' };
      default:
        return { kind: 'refused', code: reply.code };
    }
  }

  /** Reports stock given back, and announces a sold-out item that became available again. */
  private async released(order: Order, reason: 'cancelled' | 'expired', reopened: boolean): Promise<void> {
    this.events.onReleased({ saleId: order.saleId, sku: order.sku, units: order.quantity, orderIds: [order.id] }, reason);
    if (reopened) await this.events.onReopened(order.saleId, order.sku);
  }

  async cancel(orderId: string, userId: string, now = Date.now()): Promise<LifecycleOutcome> {
    const loaded = await this.load(orderId, userId);
    if (!loaded) return { kind: 'refused', code: 'ORDER_NOT_FOUND' };
    if (!loaded.inRedis) return decideOnFinalOrder(loaded.order, 'cancel');
    const outcome = await this.release(loaded.order, userId, now);
    // Cancelling at or after the deadline expires the order instead: the shopper hears so.
    if (outcome.kind === 'done' && outcome.order.status === 'expired') return { kind: 'refused', code: 'ORDER_EXPIRED' };
    return outcome;
  }

  /**
   * The sweeper's expiry of a batch of one stock shard's orders: those still pending at or after
   * their deadline expire in one script call; the rest are left alone. The release is reported
   * once, and a shard that reopened is announced. Returns the ids expired now, and those the
   * script dropped from the deadlines because their record was gone.
   */
  async expireDue(shard: ExpiryShard, orderIds: readonly string[], now = Date.now()): Promise<{ expired: readonly string[]; gone: readonly string[] }> {
    const { units, reopened, orderIds: expired, gone } = await expireDue(this.scripts, shard, orderIds, now);
    if (expired.length > 0) this.events.onReleased({ saleId: shard.saleId, sku: shard.sku, units, orderIds: expired }, 'expired');
    if (reopened) await this.events.onReopened(shard.saleId, shard.sku);
    return { expired, gone };
  }

  private async release(order: LiveOrder, userId: string, now: number): Promise<LifecycleOutcome> {
    const outage = await this.heldByOutage(order, now);
    const reply = await releaseOrder(this.scripts, orderKeysOf(order), { userId, now, outage });
    switch (reply.code) {
      case 'ALREADY':
        return this.after(order, false);
      case 'RELEASED':
        await this.released(order, reply.status, reply.reopened);
        return this.after(order, true);
      default:
        return { kind: 'refused', code: reply.code };
    }
  }
}
