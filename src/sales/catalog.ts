// The sale's live state in Redis (key layout 2): loading a sale shard by shard then its anchor,
// closing it (anchor first, then every shard), the operator's item switches fanned out to every
// stock shard of the item (restock goes to shard 0), and reading the state for views and reports.
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisClient } from '../redis/connection.ts';
import { optionalNumber } from '../redis/hash-fields.ts';
import { anchorKey, shardKeys, stockEventsChannel, type ShardRef } from '../stock/keys.ts';
import { closeAnchor, closeShard } from '../stock/scripts/close-sale.ts';
import { delistItem } from '../stock/scripts/delist-item.ts';
import { itemsOfAnchor, loadSale, loadShard } from '../stock/scripts/load-sale.ts';
import type { Scripts } from '../stock/scripts/registry.ts';
import { relistItem } from '../stock/scripts/relist-item.ts';
import { restockItem } from '../stock/scripts/restock-item.ts';
import { ShardCounts } from '../stock/shard-counts.ts';
import { stockShardsOf, type DelistReason, type ItemStock, type SaleDefinition } from './sale.ts';
import { shardStocks } from './stock-split.ts';

export type SwitchResult = { readonly ok: true; readonly available?: number; readonly relisted?: boolean } | { readonly ok: false; readonly code: 'ITEM_NOT_FOUND' | 'SALE_NOT_FOUND' };

/** An item and its K, what every fan-out needs. */
export interface ItemShards {
  readonly sku: string;
  readonly shards: number;
}

/** One stock shard as the report shows it. */
export interface ShardState {
  readonly k: number;
  /** T: the shard's hash tag (and the last 8 hex digits of its orders' ids). */
  readonly tag: number;
  readonly available: number;
  /** Units debited from this shard by transfers not yet credited to their target. */
  readonly outPending: number;
  readonly ordersAccepted: number;
  /** Shoppers homed here who hold a live order. */
  readonly liveUsers: number;
}

/** A shard's close could not be carried out (Redis unreachable for that slot): the close must be retried. */
export class CloseIncompleteError extends Error {
  override readonly name = 'CloseIncompleteError';
}

// A shard that cannot be reached is tried this many times, this far apart, before the close gives up.
const CLOSE_ATTEMPTS = 3;
const CLOSE_RETRY_DELAY_MS = 100;

const refsOf = (saleId: string, item: ItemShards): ShardRef[] =>
  Array.from({ length: item.shards }, (_, shard) => ({ saleId, sku: item.sku, shard, shards: item.shards }));

export class SaleCatalog {
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly shardCounts: ShardCounts;

  constructor(private readonly scripts: Scripts) {
    this.redis = scripts.client;
    this.prefix = scripts.prefix;
    this.shardCounts = new ShardCounts(scripts.client, scripts.prefix);
  }

  /** The item with its K (from the sale's anchor), or why it is unknown. */
  private async item(saleId: string, sku: string): Promise<ItemShards | 'SALE_NOT_FOUND' | 'ITEM_NOT_FOUND'> {
    const shards = await this.shardCounts.of(saleId, sku);
    return typeof shards === 'string' ? shards : { sku, shards };
  }

  /** Every item of a loaded sale with its K, as its anchor lists them. */
  private async itemsOf(saleId: string): Promise<ItemShards[]> {
    return itemsOfAnchor(await this.redis.hgetall(anchorKey(this.prefix, saleId)));
  }

  /**
   * Loads a sale into Redis: every shard (its copy of the window, its stock), then the anchor,
   * last. False when the anchor was already there. Safe to run again after a load cut short: a
   * loaded shard is left as it is and the anchor is written once.
   */
  async load(sale: SaleDefinition, now = Date.now()): Promise<boolean> {
    if ((await this.redis.exists(anchorKey(this.prefix, sale.id))) === 1) return false;
    const window = { startsAt: sale.startsAt, endsAt: sale.endsAt, paymentWindowMs: sale.paymentWindowSeconds * 1000 };
    await Promise.all(
      sale.items.flatMap((item) => shardStocks(item).map((stock) => loadShard(this.scripts, { saleId: sale.id, sku: item.sku, shard: stock.shard, shards: stock.shards }, { sale: window, stock, now }))),
    );
    const items = sale.items.map((item) => ({ sku: item.sku, shards: stockShardsOf(item) }));
    return (await loadSale(this.scripts, sale.id, { sale: window, items })).code === 'OK';
  }

  /**
   * Closes the sale: the anchor first (the first close wins: its time C is the sale's closedAt),
   * then every shard's copy of the sale with C, before returning. A shard that cannot be reached
   * is retried briefly, then CloseIncompleteError: the anchor is closed, so a retry of the close
   * finishes it with the same C.
   */
  async close(saleId: string, now = Date.now()): Promise<{ ok: true; closedAt: number } | { ok: false }> {
    const anchor = await closeAnchor(this.scripts, saleId, now);
    if (anchor.code !== 'OK') return { ok: false };
    const closedAt = anchor.closedAt;
    const items = await this.itemsOf(saleId);
    await Promise.all(items.flatMap((item) => refsOf(saleId, item)).map((ref) => this.closeOne(ref, closedAt)));
    return { ok: true, closedAt };
  }

  private async closeOne(ref: ShardRef, closedAt: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = await closeShard(this.scripts, ref, closedAt);
        // Every shard is loaded before the anchor: a missing one is a broken sale, not a retry.
        if (reply.code !== 'OK') throw new Error(`sale ${ref.saleId} item ${ref.sku} shard ${ref.shard} is missing while its anchor exists`);
        return;
      } catch (error) {
        if (!(error instanceof Error) || error.message.includes('is missing')) throw error;
        if (attempt >= CLOSE_ATTEMPTS) throw new CloseIncompleteError(`shard ${ref.shard} of ${ref.sku} could not be closed: ${error.message}`, { cause: error });
        await sleep(CLOSE_RETRY_DELAY_MS);
      }
    }
  }

  /** An operator's delist, on every shard of the item. */
  async delist(saleId: string, sku: string, now = Date.now()): Promise<SwitchResult> {
    const item = await this.item(saleId, sku);
    if (typeof item === 'string') return { ok: false, code: item };
    const replies = await Promise.all(refsOf(saleId, item).map((ref) => delistItem(this.scripts, ref, { now, reason: 'operator' })));
    return replies.every((reply) => reply.code === 'OK') ? { ok: true } : { ok: false, code: 'ITEM_NOT_FOUND' };
  }

  /**
   * The K > 1 low-stock rule on the item's total: marks every shard still listed `low_stock` (an
   * operator's delist stays the operator's). The caller saw no units above the level, but a
   * restock may have landed since its read and, finding no low_stock mark yet, not relisted: so
   * the units above the level are read again after marking, and any there lift the mark again.
   * A restock landing after that read finds the marks and relists. True when the delist stands.
   */
  async delistLowStock(saleId: string, sku: string, shards: number, now = Date.now()): Promise<boolean> {
    const refs = refsOf(saleId, { sku, shards });
    await Promise.all(refs.map((ref) => delistItem(this.scripts, ref, { now, reason: 'low_stock' })));
    if ((await this.unitsAboveLevel(saleId, { sku, shards })) === 0) return true;
    await Promise.all(refs.map((ref) => relistItem(this.scripts, ref, 'low_stock')));
    return false;
  }

  /** K > 1: Σ available over the item's shards (the units above its low-stock level). */
  private async unitsAboveLevel(saleId: string, item: ItemShards): Promise<number> {
    const rows = await Promise.all(refsOf(saleId, item).map((ref) => this.redis.hget(shardKeys(this.prefix, saleId, item.sku, ref.shard).item, 'available')));
    return rows.reduce((units, available) => units + Number(available ?? 0), 0);
  }

  /** An operator's relist, on every shard; on K > 1 shard 0 also releases its held units. */
  async relist(saleId: string, sku: string): Promise<SwitchResult> {
    const item = await this.item(saleId, sku);
    if (typeof item === 'string') return { ok: false, code: item };
    const replies = await Promise.all(refsOf(saleId, item).map((ref) => relistItem(this.scripts, ref, 'operator')));
    let available = 0;
    for (const reply of replies) {
      if (reply.code !== 'OK') return { ok: false, code: reply.code };
      available += reply.available;
    }
    await this.announceReopened(saleId, item.sku);
    return { ok: true, available, relisted: true };
  }

  /**
   * Adds stock on shard 0. K > 1: once the units above the level (Σ available over the shards)
   * are more than 0 again, an item the low-stock rule delisted is relisted on every shard (an
   * operator's delist stays).
   */
  async restock(saleId: string, sku: string, quantity: number): Promise<SwitchResult> {
    const item = await this.item(saleId, sku);
    if (typeof item === 'string') return { ok: false, code: item };
    const reply = await restockItem(this.scripts, { saleId, sku: item.sku }, { quantity });
    if (reply.code !== 'OK') return { ok: false, code: reply.code };
    let relisted = reply.relisted;
    if (item.shards > 1) {
      const refs = refsOf(saleId, item);
      const shards = await Promise.all(refs.map((ref) => this.redis.hmget(shardKeys(this.prefix, saleId, item.sku, ref.shard).item, 'available', 'delisted')));
      const above = shards.reduce((units, [available]) => units + Number(available ?? 0), 0);
      const marks = shards.map(([, delisted]) => delisted);
      if (above > 0 && marks.includes('low_stock')) {
        await Promise.all(refs.map((ref) => relistItem(this.scripts, ref, 'low_stock')));
        relisted = !marks.includes('operator');
      }
    }
    await this.announceReopened(saleId, item.sku);
    return { ok: true, available: reply.availableAfter, relisted };
  }

  /** Tells every API process to forget its sold-out mark for this item. */
  async announceReopened(saleId: string, sku: string): Promise<void> {
    await this.redis.publish(stockEventsChannel(this.prefix), JSON.stringify({ saleId, sku }));
  }

  /**
   * The sale's closedAt (from its anchor) and every item's stock summed over its shards, in one
   * round of reads; undefined if the sale is not loaded. An item's `available` is its total left:
   * Σ available + Σ outPending (units in transfer between shards) + held (K > 1: the low-stock level).
   */
  async state(saleId: string, skus: readonly string[]): Promise<{ closedAt: number | null; items: Map<string, ItemStock> } | undefined> {
    const known = await Promise.all(skus.map((sku) => this.item(saleId, sku)));
    if (known.includes('SALE_NOT_FOUND')) return undefined;
    const items = known.filter((item): item is ItemShards => typeof item !== 'string');
    // Separate commands, not one MULTI: on a cluster they go to each shard's own master.
    const [anchor, ...hashes] = await Promise.all([
      this.redis.hgetall(anchorKey(this.prefix, saleId)),
      ...items.map((item) => Promise.all(refsOf(saleId, item).map((ref) => this.redis.hgetall(shardKeys(this.prefix, saleId, item.sku, ref.shard).item)))),
    ]);
    if (!anchor || Object.keys(anchor).length === 0) return undefined;
    const stock = new Map<string, ItemStock>();
    items.forEach((item, index) => {
      const shards = hashes[index] ?? [];
      const [first] = shards;
      if (!first || first.available === undefined) return;
      let left = Number(first.held ?? 0);
      for (const hash of shards) left += Number(hash.available ?? 0) + Number(hash.outPending ?? 0);
      const marked = shards.find((hash) => hash.delisted);
      stock.set(item.sku, {
        available: left,
        total: Number(first.total),
        delisted: (marked?.delisted || null) as DelistReason | null,
        soldOutAt: optionalNumber(first.soldOutAt) ?? null,
        delistedAt: optionalNumber(marked?.delistedAt) ?? null,
      });
    });
    return { closedAt: optionalNumber(anchor.closedAt) ?? null, items: stock };
  }

  /** Every shard of every item as the report shows it, plus the head of each shard's outbox. */
  async shards(saleId: string): Promise<Map<string, { shards: ShardState[]; oldestOutboxMs: number | undefined }>> {
    const items = await this.itemsOf(saleId);
    const result = new Map<string, { shards: ShardState[]; oldestOutboxMs: number | undefined }>();
    await Promise.all(
      items.map(async (item) => {
        const states = await Promise.all(
          refsOf(saleId, item).map(async (ref) => {
            const keys = shardKeys(this.prefix, saleId, item.sku, ref.shard);
            const [stock, accepted, liveUsers, head] = await Promise.all([
              this.redis.hmget(keys.item, 'available', 'outPending'),
              this.redis.hget(keys.sale, 'ordersAccepted'),
              this.redis.hlen(keys.users),
              this.redis.xrange(keys.outbox, '-', '+', 'COUNT', 1) as Promise<[string, string[]][]>,
            ]);
            const state: ShardState = {
              k: ref.shard,
              tag: keys.tag,
              available: Number(stock[0] ?? 0),
              outPending: Number(stock[1] ?? 0),
              ordersAccepted: Number(accepted ?? 0),
              liveUsers,
            };
            return { state, head: head[0] ? Number(head[0][0].split('-')[0]) : undefined };
          }),
        );
        const heads = states.flatMap((s) => (s.head === undefined ? [] : [s.head]));
        result.set(item.sku, { shards: states.map((s) => s.state), oldestOutboxMs: heads.length > 0 ? Math.min(...heads) : undefined });
      }),
    );
    return result;
  }
}
