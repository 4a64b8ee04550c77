// delistItem-1.lua: an operator takes an item off sale; it stays off until relisted.
import { saleKeys } from '../keys.ts';
import type { ItemKeys } from './item-keys.ts';
import type { Scripts } from './registry.ts';
import { parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface DelistItemArgs {
  readonly now: number;
}

export type DelistItemReply = { readonly code: 'OK' } | Refusal<'delistItem'>;

export async function delistItem(scripts: Scripts, keys: ItemKeys, args: DelistItemArgs): Promise<DelistItemReply> {
  const reply = await scripts.client.delistItem(saleKeys(scripts.prefix, keys.saleId).item(keys.sku), args.now);
  return parseReply<DelistItemReply>('delistItem', reply, { OK: () => ({ code: 'OK' }) as const });
}
