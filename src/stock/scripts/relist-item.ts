// relistItem-1.lua: puts one stock shard of an item back on sale (callers fan out to every
// shard); on K > 1 shard 0 releases its held units.
import { shardKeys, type ShardRef } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export type RelistItemReply = { readonly code: 'OK'; readonly available: number } | Refusal<'relistItem'>;

/** operator (default): lifts any delist, releases held; low_stock: lifts only the rule's delist (a K > 1 restock). */
export async function relistItem(scripts: Scripts, ref: ShardRef, reason: 'operator' | 'low_stock' = 'operator'): Promise<RelistItemReply> {
  const reply = await scripts.client.relistItem(shardKeys(scripts.prefix, ref.saleId, ref.sku, ref.shard).item, reason);
  return parseReply<RelistItemReply>('relistItem', reply, {
    OK: ([units]) => {
      const available = integer(units);
      return available === undefined ? undefined : ({ code: 'OK', available } as const);
    },
  });
}
