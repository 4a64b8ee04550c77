// relistItem-1.lua: an operator puts an item back on sale, whatever delisted it.
import { saleKeys } from '../keys.ts';
import type { ItemKeys } from './item-keys.ts';
import type { Scripts } from './registry.ts';
import { integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export type RelistItemReply = { readonly code: 'OK'; readonly available: number } | Refusal<'relistItem'>;

export async function relistItem(scripts: Scripts, keys: ItemKeys): Promise<RelistItemReply> {
  const reply = await scripts.client.relistItem(saleKeys(scripts.prefix, keys.saleId).item(keys.sku));
  return parseReply<RelistItemReply>('relistItem', reply, {
    OK: ([units]) => {
      const available = integer(units);
      return available === undefined ? undefined : ({ code: 'OK', available } as const);
    },
  });
}
