// restockItem-1.lua: adds stock to an item, relisting it when the low-stock rule had delisted it
// and stock is now above that level.
import { saleKeys } from '../keys.ts';
import type { ItemKeys } from './item-keys.ts';
import type { Scripts } from './registry.ts';
import { flag, integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface RestockItemArgs {
  readonly quantity: number;
}

export type RestockItemReply = { readonly code: 'OK'; readonly availableAfter: number; readonly relisted: boolean } | Refusal<'restockItem'>;

export async function restockItem(scripts: Scripts, keys: ItemKeys, args: RestockItemArgs): Promise<RestockItemReply> {
  const reply = await scripts.client.restockItem(saleKeys(scripts.prefix, keys.saleId).item(keys.sku), args.quantity);
  return parseReply<RestockItemReply>('restockItem', reply, {
    OK: ([units, relistedFlag]) => {
      const [availableAfter, relisted] = [integer(units), flag(relistedFlag)];
      return availableAfter === undefined || relisted === undefined ? undefined : ({ code: 'OK', availableAfter, relisted } as const);
    },
  });
}
