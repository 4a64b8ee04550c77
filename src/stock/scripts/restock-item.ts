// restockItem-1.lua: adds stock to an item on its shard 0. K = 1: relists the item when the
// low-stock rule had delisted it and stock is now above that level. K > 1: tops the held units up
// to the level first; relisting is the caller's, which sees every shard.
import { shardKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { flag, integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface RestockItemArgs {
  readonly quantity: number;
}

export type RestockItemReply =
  | { readonly code: 'OK'; readonly availableAfter: number; readonly relisted: boolean; readonly held: number }
  | Refusal<'restockItem'>;

export async function restockItem(scripts: Scripts, item: { readonly saleId: string; readonly sku: string }, args: RestockItemArgs): Promise<RestockItemReply> {
  const reply = await scripts.client.restockItem(shardKeys(scripts.prefix, item.saleId, item.sku, 0).item, args.quantity);
  return parseReply<RestockItemReply>('restockItem', reply, {
    OK: ([units, relistedFlag, heldUnits]) => {
      const [availableAfter, relisted, held] = [integer(units), flag(relistedFlag), integer(heldUnits)];
      return availableAfter === undefined || relisted === undefined || held === undefined ? undefined : ({ code: 'OK', availableAfter, relisted, held } as const);
    },
  });
}
