// delistItem-1.lua: takes one stock shard of an item off sale (callers fan out to every shard).
import { shardKeys, type ShardRef } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface DelistItemArgs {
  readonly now: number;
  /** operator: by hand, until relisted; low_stock: the K > 1 rule, marks only a listed shard. */
  readonly reason?: 'operator' | 'low_stock';
}

export type DelistItemReply = { readonly code: 'OK' } | Refusal<'delistItem'>;

export async function delistItem(scripts: Scripts, ref: ShardRef, args: DelistItemArgs): Promise<DelistItemReply> {
  const reply = await scripts.client.delistItem(shardKeys(scripts.prefix, ref.saleId, ref.sku, ref.shard).item, args.now, args.reason ?? 'operator');
  return parseReply<DelistItemReply>('delistItem', reply, { OK: () => ({ code: 'OK' }) as const });
}
