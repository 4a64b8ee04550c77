// loadShard-2.lua and loadSale-1.lua: a sale is loaded shard by shard (each shard's copy of the
// window and its stock, one step per slot), then its anchor, last: the anchor's existence means
// every shard is loaded, and a load cut short is finished by running it again.
import { anchorKey, decodeKeyPart, encodeKeyPart, shardKeys, type ShardRef } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface SaleWindow {
  readonly startsAt: number;
  readonly endsAt: number;
  readonly paymentWindowMs: number;
}

/** One stock shard of an item as loadShard stores it (src/sales/stock-split.ts decides the numbers). */
export interface ShardStock {
  readonly sku: string;
  readonly shard: number;
  readonly shards: number;
  readonly available: number;
  readonly unitPrice: number;
  readonly perUserLimit: number;
  readonly delisted: '' | 'low_stock';
  readonly soldOut: boolean;
  /** Shard 0 only. */
  readonly total?: number | undefined;
  readonly lowUnits?: number | undefined;
  readonly lowPct?: number | undefined;
  /** K > 1, shard 0 only: the low-stock level's units, never sold. */
  readonly held?: number | undefined;
}

/** EXISTS: the shard was loaded before (a retried load), and left as it was. */
export type LoadShardReply = { readonly code: 'OK' | 'EXISTS' };

export async function loadShard(scripts: Scripts, ref: ShardRef, args: { sale: SaleWindow; stock: ShardStock; now: number }): Promise<LoadShardReply> {
  const names = shardKeys(scripts.prefix, ref.saleId, ref.sku, ref.shard);
  const reply = await scripts.client.loadShard(names.sale, names.item, JSON.stringify(args.sale), args.now, JSON.stringify(args.stock));
  return parseReply<LoadShardReply>('loadShard', reply, { OK: () => ({ code: 'OK' }) as const, EXISTS: () => ({ code: 'EXISTS' }) as const });
}

export type LoadSaleReply = { readonly code: 'OK' } | Refusal<'loadSale'>;

/** Writes the sale's anchor (window, closedAt '', layout 2, every item's K); SALE_EXISTS if it is there. */
export async function loadSale(
  scripts: Scripts,
  saleId: string,
  args: { sale: SaleWindow; items: readonly { readonly sku: string; readonly shards: number }[] },
): Promise<LoadSaleReply> {
  const shards = args.items.flatMap((item) => [anchorShardsField(item.sku), item.shards]);
  const reply = await scripts.client.loadSale(anchorKey(scripts.prefix, saleId), JSON.stringify(args.sale), JSON.stringify(shards));
  return parseReply<LoadSaleReply>('loadSale', reply, { OK: () => ({ code: 'OK' }) as const });
}

/** The anchor's field holding an item's K. */
export function anchorShardsField(sku: string): string {
  return `shards:${encodeKeyPart(sku)}`;
}

/** The SKU an anchor field `shards:<encoded sku>` names; undefined for the anchor's other fields. */
export function skuOfAnchorField(field: string): string | undefined {
  return field.startsWith('shards:') ? decodeKeyPart(field.slice('shards:'.length)) : undefined;
}

/** Every item an anchor (its HGETALL) lists, with its K. */
export function itemsOfAnchor(anchor: Record<string, string>): { sku: string; shards: number }[] {
  return Object.entries(anchor).flatMap(([field, shards]) => {
    const sku = skuOfAnchorField(field);
    return sku === undefined ? [] : [{ sku, shards: Number(shards) }];
  });
}
