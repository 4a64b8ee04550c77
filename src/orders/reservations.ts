// Deciding order attempts: reserveOrder on the shopper's home stock shard plus the in-process
// sold-out fast path, turning an accepted reservation into an Order. One Redis round trip per
// attempt (the attempt limit is counted inside it) once K of the item is known, plus the shopper
// index write after an accepted one; none once an item is known to be closed or this process
// alone has seen the shopper go over the limit. K > 1: when the home shard holds too few units,
// the item's total decides (stock is pulled from the other shards, or the item is sold out, or
// delisted at its low-stock level).
import type { Logger } from '../logger.ts';
import { AttemptWindow } from '../stock/attempt-window.ts';
import { ClosedItems } from '../stock/closed-items.ts';
import { homeShard, shardKeys, userOrdersKey, type ShardRef } from '../stock/keys.ts';
import { mintOrderId } from '../stock/order-id.ts';
import type { ReserveRefusal } from '../stock/scripts/refusals.ts';
import type { Scripts } from '../stock/scripts/registry.ts';
import type { ReplicaAck } from '../stock/scripts/acked.ts';
import { reserveOrder, reserveOrderAcked, type ReserveOrderReply } from '../stock/scripts/reserve-order.ts';
import { ShardCounts } from '../stock/shard-counts.ts';
import { TransferNotDurable } from '../stock/transfers.ts';
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

/** How stock moves between an item's shards (src/stock/transfers.ts, StockTransfers). */
export interface StockMover {
  totals(saleId: string, sku: string, shards: number): Promise<{ available: number[]; outPending: number[]; held: number; delisted: string[] }>;
  /** Units moved into shard `to` (at most `need`). */
  pullInto(saleId: string, sku: string, shards: number, to: number, need: number): Promise<number>;
  /** Completes transfers debited and not yet credited; the units credited. */
  recover(saleId: string, sku: string, shards: number): Promise<number>;
}

/** What K > 1 needs besides the scripts: moving stock, and delisting an item on its total. */
export interface ShardedStock {
  readonly transfers: StockMover;
  /** False when units above the level turned up meanwhile (a restock) and the delist was lifted again. */
  delistLowStock(saleId: string, sku: string, shards: number, now: number): Promise<boolean>;
}

export interface ReservationEvents {
  /** K > 1: the item's units above its low-stock level ran out; every shard is now delisted. */
  onLowStockDelisted(saleId: string, sku: string): void;
  /** K > 1: the item's total reached 0. */
  onSoldOut(saleId: string, sku: string): void;
  /** The shopper index write after an accepted order failed (the order stands; Postgres lists it once persisted). */
  onIndexWriteFailed(orderId: string, error: unknown): void;
}

export interface ReservationOptions {
  readonly closedItems?: ClosedItems;
  /** Attempts per shopper per item per second (RATE_LIMIT_USER_PER_SEC); limit 0 = none. */
  readonly attempts?: AttemptWindow;
  /** Replica durability: WAIT for this after each reserve; undefined (async) sends the script alone. */
  readonly replicaAck?: ReplicaAck | undefined;
  /** Needed for items with K > 1. */
  readonly sharded?: ShardedStock | undefined;
  readonly events?: Partial<ReservationEvents>;
  readonly logger?: Logger;
}

/** The shopper index keeps an order this long after the shopper's last one (refreshed on each add). */
export const USER_ORDERS_TTL_MS = 48 * 60 * 60 * 1000;
// K > 1: how many times an attempt pulls stock into its home shard before it gives up (others
// may take the pulled units first).
const PULL_ROUNDS = 2;

type Decision = { readonly reply: ReserveOrderReply; readonly acknowledgedBy?: number };

export class Reservations {
  readonly closedItems: ClosedItems;
  private readonly attempts: AttemptWindow;
  private readonly shardCounts: ShardCounts;

  constructor(
    private readonly scripts: Scripts,
    private readonly options: ReservationOptions = {},
  ) {
    this.closedItems = options.closedItems ?? new ClosedItems();
    this.attempts = options.attempts ?? new AttemptWindow(0);
    this.shardCounts = new ShardCounts(scripts.client, scripts.prefix);
  }

  async reserve(request: ReserveRequest, now = Date.now()): Promise<Reservation> {
    const { saleId, sku, userId } = request;
    const idempotencyKey = request.idempotencyKey ?? '';
    if (!this.attempts.admit(saleId, sku, userId, now)) return { kind: 'refused', code: 'RATE_LIMITED', fromMemory: true };
    const closed = this.closedItems.get(saleId, sku, now);
    if (closed && idempotencyKey === '') return { kind: 'refused', code: closed, fromMemory: true };
    const shards = await this.shardCounts.of(saleId, sku);
    if (typeof shards === 'string') return { kind: 'refused', code: shards, fromMemory: false };
    const ref: ShardRef = { saleId, sku, shard: homeShard(userId, shards), shards };
    // A keyed attempt on a closed item may be the replay of an order made before it closed:
    // only a key that exists needs the script; the rest are refused after one cheap EXISTS.
    if (closed) {
      const key = shardKeys(this.scripts.prefix, saleId, sku, ref.shard).idempotency(userId, idempotencyKey);
      if ((await this.scripts.client.exists(key)) !== 1) return { kind: 'refused', code: closed, fromMemory: true };
    }
    let decision = await this.decide(ref, request, now);
    for (let round = 0; decision.reply.code === 'NEED_STOCK'; round++) {
      const refusal = await this.refill(ref, request.quantity, decision.reply, round, now);
      if (refusal) return { kind: 'refused', code: refusal.code, fromMemory: false };
      decision = await this.decide(ref, request, now);
    }
    return this.outcome(decision, ref, now);
  }

  /** One reserveOrder on the home shard (with WAIT in replica mode); a taken order id is minted again once. */
  private async decide(ref: ShardRef, request: ReserveRequest, now: number): Promise<Decision> {
    for (let minted = 1; ; minted++) {
      const keys = { ...request, shard: ref.shard, orderId: mintOrderId(shardKeys(this.scripts.prefix, ref.saleId, ref.sku, ref.shard).tag) };
      const args = { quantity: request.quantity, now, attemptsPerSecond: this.attempts.limit };
      const decision: Decision = this.options.replicaAck
        ? await reserveOrderAcked(this.scripts, keys, args, this.options.replicaAck)
        : { reply: await reserveOrder(this.scripts, keys, args) };
      if (decision.reply.code !== 'ORDER_ID_TAKEN') return decision;
      if (minted >= 2) throw new Error(`two order ids minted for shard ${ref.shard} of ${ref.saleId}/${ref.sku} were both taken`);
    }
  }

  private async outcome(decision: Decision, ref: ShardRef, now: number): Promise<Reservation> {
    const { reply } = decision;
    const { saleId, sku } = ref;
    const replicas = this.options.replicaAck?.replicas;
    // Refusals change nothing worth waiting for; an order (new or replayed) must be on the replicas.
    if (replicas !== undefined && decision.acknowledgedBy !== undefined && decision.acknowledgedBy < replicas && (reply.code === 'OK' || reply.code === 'REPLAY')) {
      if (reply.code === 'OK') await this.index(reply.order.userId, reply.order.id, reply.order.createdAt);
      this.noteClosing(reply, saleId, sku, now);
      return { kind: 'unacknowledged', orderId: reply.code === 'OK' ? reply.order.id : reply.orderId, acknowledgedBy: decision.acknowledgedBy };
    }
    switch (reply.code) {
      case 'REPLAY':
        return { kind: 'replayed', orderId: reply.orderId };
      case 'OK': {
        await this.index(reply.order.userId, reply.order.id, reply.order.createdAt);
        this.noteClosing(reply, saleId, sku, now);
        return { kind: 'accepted', order: pendingOrder(reply.order), availableAfter: reply.availableAfter, delistedNow: reply.delistedNow, soldOutNow: reply.soldOutNow };
      }
      case 'NEED_STOCK':
      case 'ORDER_ID_TAKEN':
        throw new Error(`reserveOrder answered ${reply.code} where it was already handled`);
      default:
        if (reply.code === 'SOLD_OUT' || reply.code === 'ITEM_DELISTED' || reply.code === 'SALE_ENDED') this.closedItems.mark(saleId, sku, reply.code, now);
        return { kind: 'refused', code: reply.code, fromMemory: false };
    }
  }

  /**
   * K > 1, the home shard holds too few units: decides on the item's total. Σ available 0 (after
   * completing stale transfers): INSUFFICIENT_STOCK while units are still in transfer, else
   * delisted at the low-stock level when units are held there (unless units above the level
   * turned up meanwhile: ask again), else sold out. Then the per-user cap (the home shard's count
   * is the whole truth), then Σ < quantity: INSUFFICIENT_STOCK. Else pulls what is missing into
   * the home shard and lets the caller ask again (undefined), at most PULL_ROUNDS times.
   */
  private async refill(
    ref: ShardRef,
    quantity: number,
    need: Extract<ReserveOrderReply, { code: 'NEED_STOCK' }>,
    round: number,
    now: number,
  ): Promise<{ code: ReserveRefusal } | undefined> {
    const sharded = this.options.sharded;
    if (!sharded) throw new Error(`item ${ref.sku} of ${ref.saleId} has ${ref.shards} shards, and this process cannot move stock between them`);
    const { saleId, sku, shards } = ref;
    const totals = await this.itemTotals(sharded, ref);
    const units = sum(totals.available);
    if (units === 0) {
      // Units still in flight: the item is not empty, they are just not sellable this instant.
      if (sum(totals.outPending) > 0) return { code: 'INSUFFICIENT_STOCK' };
      if (totals.held > 0) {
        // Units above the level since the read (a restock): ask again (and pull) instead of refusing.
        if (!(await sharded.delistLowStock(saleId, sku, shards, now))) return round >= PULL_ROUNDS ? { code: 'INSUFFICIENT_STOCK' } : undefined;
        this.closedItems.mark(saleId, sku, 'ITEM_DELISTED', now);
        this.options.events?.onLowStockDelisted?.(saleId, sku);
        this.options.logger?.warn({ event: 'item_delisted', saleId, sku, reason: 'low_stock', held: totals.held }, 'item delisted: its total fell to its low-stock level');
        return { code: 'ITEM_DELISTED' };
      }
      await this.scripts.client.hsetnx(shardKeys(this.scripts.prefix, saleId, sku, 0).item, 'soldOutAt', now);
      this.closedItems.mark(saleId, sku, 'SOLD_OUT', now);
      this.options.events?.onSoldOut?.(saleId, sku);
      return { code: 'SOLD_OUT' };
    }
    if (need.liveQuantity + quantity > need.perUserLimit) return { code: 'PER_USER_LIMIT_EXCEEDED' };
    if (units < quantity || round >= PULL_ROUNDS) return { code: 'INSUFFICIENT_STOCK' };
    const home = totals.available[ref.shard] ?? 0;
    try {
      await sharded.transfers.pullInto(saleId, sku, shards, ref.shard, quantity - home);
    } catch (error) {
      // Replica durability: a step not yet on the replicas stops the transfer; recovery finishes
      // it. The units are in flight, not lost: this attempt asks again with what arrived.
      if (!(error instanceof TransferNotDurable)) throw error;
      this.options.logger?.warn({ event: 'transfer_not_durable', saleId, sku, shard: ref.shard, err: error }, 'a stock pull was left to recovery');
    }
    return undefined;
  }

  /**
   * The item's shards as one total. Transfers in flight are finished first when nothing else is
   * sellable. The shards are read one by one (on a cluster, from different masters), so a transfer
   * whose credit and close both land between two of the reads can hide its units: an item is only
   * called empty when a second read agrees.
   */
  private async itemTotals(sharded: ShardedStock, { saleId, sku, shards }: ShardRef): ReturnType<StockMover['totals']> {
    let totals = await sharded.transfers.totals(saleId, sku, shards);
    if (sum(totals.available) === 0 && sum(totals.outPending) > 0) {
      await sharded.transfers.recover(saleId, sku, shards);
      totals = await sharded.transfers.totals(saleId, sku, shards);
    }
    if (sum(totals.available) === 0 && sum(totals.outPending) === 0) totals = await sharded.transfers.totals(saleId, sku, shards);
    return totals;
  }

  /** Adds the order to the shopper's index (one pipelined round trip); a failure is reported, never thrown. */
  private async index(userId: string, orderId: string, createdAt: number): Promise<void> {
    const key = userOrdersKey(this.scripts.prefix, userId);
    try {
      // Two commands riding the connection's auto-pipeline (in order, one slot), not a pipeline of
      // their own: building an ioredis Pipeline copies every defined script and cost about 8 % of
      // the API's CPU per order in a profile of the in-stock bench.
      await Promise.all([this.scripts.client.zadd(key, createdAt, orderId), this.scripts.client.pexpire(key, USER_ORDERS_TTL_MS)]);
    } catch (error) {
      this.options.events?.onIndexWriteFailed?.(orderId, error);
      this.options.logger?.warn({ event: 'user_orders_index_failed', orderId, err: error }, 'could not add an accepted order to the shopper index');
    }
  }

  // The order that took the last unit (or crossed the low-stock level) closes the item for this process.
  private noteClosing(reply: ReserveOrderReply, saleId: string, sku: string, now: number): void {
    if (reply.code !== 'OK') return;
    if (reply.delistedNow) this.closedItems.mark(saleId, sku, 'ITEM_DELISTED', now);
    else if (reply.soldOutNow) this.closedItems.mark(saleId, sku, 'SOLD_OUT', now);
  }
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
