// What a rebuilt shard must hold, computed from the system of record alone (no Redis, no I/O), so
// the arithmetic can be read and tested apart from the writes. Stock is never guessed: every
// number comes from Postgres (initial stock, restocks, live orders) and, when some of the
// item's shards survived, from what those shards still hold.
import type { Order } from '../orders/order.ts';
import type { OperatorListing } from '../sales/repository.ts';
import type { LowStockRule } from '../sales/sale.ts';
import { encodeKeyPart, homeShard, shardTag, type ShardRef } from '../stock/keys.ts';
import { tagOfOrderId } from '../stock/order-id.ts';
import { IDEMPOTENCY_TTL_SECONDS } from '../stock/scripts/reserve-order.ts';

/** One item as Postgres records it. */
export interface RecordedItem {
  readonly sku: string;
  readonly unitPrice: number;
  readonly perUserLimit: number;
  /** Initial stock plus every restock. */
  readonly total: number;
  readonly lowStock?: LowStockRule | undefined;
  /** K */
  readonly shards: number;
  /** The operator's last delist or relist, if any (migrations/0004). */
  readonly listing?: { readonly listing: OperatorListing; readonly at: number } | undefined;
}

/** One sale as Postgres records it; times in ms since the epoch. */
export interface RecordedSale {
  readonly id: string;
  readonly startsAt: number;
  readonly endsAt: number;
  readonly paymentWindowMs: number;
  readonly closedAt: number | null;
  readonly items: readonly RecordedItem[];
}

/** What a shard that was not lost still holds (its stock is the truth; the rebuild leaves it be). */
export interface SurvivingShard {
  readonly available: number;
  readonly outPending: number;
  /** Shard 0 of a K > 1 item: the low-stock level's units set aside. */
  readonly held: number;
  readonly delisted: string;
  readonly delistedAt: string;
}

/** Everything one lost shard is written with (layout2.md field names). */
export interface ShardPlan {
  readonly ref: ShardRef;
  readonly sale: Record<string, string | number>;
  readonly item: Record<string, string | number>;
  /** userId → live quantity, for the shoppers whose home is this shard. */
  readonly users: ReadonlyMap<string, number>;
  /** Pending orders of this shard: a record each and a deadline each, so they still expire once. */
  readonly pending: readonly Order[];
  /** Keys of live orders still inside their 24 h: replayed by a keyed retry. */
  readonly idempotency: readonly { readonly userId: string; readonly key: string; readonly value: string; readonly ttlSeconds: number }[];
  /** Live orders of this shard (for the shoppers' index). */
  readonly live: readonly Order[];
}

const LIVE = new Set<Order['status']>(['pending_payment', 'paid']);

export function isLive(order: Pick<Order, 'status'>): boolean {
  return LIVE.has(order.status);
}

/** The low-stock level in units (as the scripts hold it): floor(pct × total / 100), or min(units, total). */
export function lowStockLevel(total: number, rule: LowStockRule | undefined): number {
  if (!rule) return 0;
  return 'units' in rule ? Math.min(rule.units, total) : Math.floor((rule.percent * total) / 100);
}

/** lua/includes/lowStock.lua, for K = 1. */
export function atOrBelowLowStock(units: number, total: number, rule: LowStockRule | undefined): boolean {
  if (!rule) return false;
  return 'units' in rule ? units <= rule.units : units * 100 <= rule.percent * total;
}

/**
 * The shard an order lives on: the one whose tag its id carries. An order made before layout 2
 * (a migrated sale) carries no shard's tag; it goes to its shopper's home shard, where its
 * stock and allowance are counted.
 */
export function shardOfOrder(order: Pick<Order, 'id' | 'saleId' | 'sku' | 'userId'>, shards: number): number {
  const tag = tagOfOrderId(order.id);
  for (let k = 0; k < shards; k++) if (shardTag(order.saleId, order.sku, k) === tag) return k;
  return homeShard(order.userId, shards);
}

/**
 * The orders that are live now: Postgres's live orders, overlaid with the newest state of every
 * order still waiting in a surviving outbox (accepted, paid or ended in Redis, not yet in
 * Postgres). `persisted` names the outbox orders Postgres already holds in a final status, which
 * no outbox entry can bring back to life.
 */
export function effectiveLiveOrders(postgresLive: readonly Order[], outbox: readonly Order[], persistedFinal: ReadonlySet<string>): Order[] {
  const byId = new Map(postgresLive.map((order) => [order.id, order]));
  for (const order of outbox) {
    if (persistedFinal.has(order.id)) continue;
    const known = byId.get(order.id);
    // A final status is never undone; a stale pending entry does not revive an ended order.
    if (known && !isLive(known)) continue;
    if (known && isLive(order) && known.status === 'paid') continue;
    byId.set(order.id, order);
  }
  return [...byId.values()].filter(isLive);
}

export interface PlanInput {
  readonly sale: RecordedSale;
  readonly item: RecordedItem;
  /** The shards of this item to write. */
  readonly lost: readonly number[];
  /** The shards of this item that survive, by shard number. */
  readonly survivors: ReadonlyMap<number, SurvivingShard>;
  /** Live orders of this item (effectiveLiveOrders). */
  readonly live: readonly Order[];
  /** Orders ever accepted per shard (Postgres), for the shard's ordersAccepted counter. */
  readonly accepted: ReadonlyMap<number, number>;
  /** The sale's close time as the surviving state or Postgres knows it. */
  readonly closedAt: number | null;
  readonly now: number;
}

/** The lost shards of one item, fully planned. */
export function planItem(input: PlanInput): ShardPlan[] {
  const { sale, item, lost, survivors, live, now } = input;
  const K = item.shards;
  const liveQuantity = live.reduce((sum, order) => sum + order.quantity, 0);
  const remaining = Math.max(0, item.total - liveQuantity);
  const survivingStock = [...survivors].reduce((sum, [k, shard]) => sum + shard.available + shard.outPending + (k === 0 ? shard.held : 0), 0);
  let toSpread = Math.max(0, remaining - survivingStock);
  const relisted = item.listing?.listing === 'relisted';
  const operatorDelisted = item.listing?.listing === 'delisted';

  // K > 1: the level's units stay on shard 0 (layout2.md), never sold; an operator's relist released them.
  let held = 0;
  if (K > 1 && lost.includes(0) && !relisted) {
    held = Math.min(lowStockLevel(item.total, item.lowStock), toSpread);
    toSpread -= held;
  }
  const ordered = [...lost].sort((a, b) => a - b);
  const share = (index: number) => Math.floor(toSpread / ordered.length) + (index < toSpread % ordered.length ? 1 : 0);

  const survivor = [...survivors.values()][0];
  let delisted = '';
  let delistedAt: string | number = '';
  if (operatorDelisted) [delisted, delistedAt] = ['operator', item.listing?.at ?? now];
  else if (survivor) [delisted, delistedAt] = [survivor.delisted, survivor.delistedAt];
  else if (!relisted && K === 1 && atOrBelowLowStock(remaining, item.total, item.lowStock)) [delisted, delistedAt] = ['low_stock', now];
  else if (!relisted && K > 1 && toSpread === 0 && held > 0) [delisted, delistedAt] = ['low_stock', now];

  return ordered.map((k, index) => {
    const available = share(index);
    const mine = live.filter((order) => shardOfOrder(order, K) === k);
    const users = new Map<string, number>();
    for (const order of live) {
      if (homeShard(order.userId, K) === k) users.set(order.userId, (users.get(order.userId) ?? 0) + order.quantity);
    }
    const itemHash: Record<string, string | number> = {
      sku: item.sku,
      shard: k,
      shards: K,
      available,
      unitPrice: item.unitPrice,
      perUserLimit: item.perUserLimit,
      delisted,
      outPending: 0,
    };
    if (delistedAt !== '') itemHash.delistedAt = delistedAt;
    // As loading marks it: the item sold out when nothing is left of it at all.
    if (remaining === 0) itemHash.soldOutAt = now;
    if (k === 0) {
      itemHash.total = item.total;
      if (item.lowStock && 'units' in item.lowStock) itemHash.lowUnits = item.lowStock.units;
      else if (item.lowStock) itemHash.lowPct = item.lowStock.percent;
      if (K > 1) itemHash.held = held;
    }
    return {
      ref: { saleId: sale.id, sku: item.sku, shard: k, shards: K },
      sale: {
        startsAt: sale.startsAt,
        endsAt: sale.endsAt,
        paymentWindowMs: sale.paymentWindowMs,
        closedAt: input.closedAt ?? '',
        ordersAccepted: input.accepted.get(k) ?? 0,
      },
      item: itemHash,
      users,
      pending: mine.filter((order) => order.status === 'pending_payment'),
      idempotency: mine.flatMap((order) => {
        const ttlSeconds = Math.ceil((order.createdAt + IDEMPOTENCY_TTL_SECONDS * 1000 - now) / 1000);
        if (!order.idempotencyKey || ttlSeconds <= 0) return [];
        return [{ userId: order.userId, key: order.idempotencyKey, value: `${order.id}|${order.sku}|${order.quantity}`, ttlSeconds }];
      }),
      live: mine,
    };
  });
}

/** The sale's anchor, written last: its existence says every shard is loaded. */
export function planAnchor(sale: RecordedSale, closedAt: number | null): Record<string, string | number> {
  const anchor: Record<string, string | number> = {
    startsAt: sale.startsAt,
    endsAt: sale.endsAt,
    paymentWindowMs: sale.paymentWindowMs,
    closedAt: closedAt ?? '',
    layout: '2',
  };
  for (const item of sale.items) anchor[`shards:${encodeKeyPart(item.sku)}`] = item.shards;
  return anchor;
}
