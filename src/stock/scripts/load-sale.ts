// loadSale.lua: loads a new sale and all its items in one atomic step, or nothing.
import { saleKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface LoadSaleKeys {
  readonly saleId: string;
}

/** One item as the script stores it; its key is named after `sku`. */
export interface LoadSaleItem {
  readonly sku: string;
  readonly stock: number;
  readonly unitPrice: number;
  readonly perUserLimit: number;
  readonly lowUnits?: number | undefined;
  readonly lowPct?: number | undefined;
}

export interface LoadSaleArgs {
  readonly sale: { readonly startsAt: number; readonly endsAt: number; readonly paymentWindowMs: number };
  readonly items: readonly LoadSaleItem[];
  readonly now: number;
}

export type LoadSaleReply = { readonly code: 'OK' } | Refusal<'loadSale'>;

export async function loadSale(scripts: Scripts, keys: LoadSaleKeys, args: LoadSaleArgs): Promise<LoadSaleReply> {
  const names = saleKeys(scripts.prefix, keys.saleId);
  const itemKeys = args.items.map((item) => names.item(item.sku));
  const itemJson = args.items.map((item) => JSON.stringify(item));
  const reply = await scripts.client.loadSale(1 + itemKeys.length, names.sale, ...itemKeys, JSON.stringify(args.sale), args.now, ...itemJson);
  return parseReply<LoadSaleReply>('loadSale', reply, { OK: () => ({ code: 'OK' }) as const });
}
