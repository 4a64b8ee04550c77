// closeSale-1.lua: ends a sale now; every later attempt is refused with SALE_ENDED.
import { saleKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface CloseSaleKeys {
  readonly saleId: string;
}

export interface CloseSaleArgs {
  readonly now: number;
}

/** closedAt: the first close time when it was already closed. */
export type CloseSaleReply = { readonly code: 'OK'; readonly closedAt: number } | Refusal<'closeSale'>;

export async function closeSale(scripts: Scripts, keys: CloseSaleKeys, args: CloseSaleArgs): Promise<CloseSaleReply> {
  const reply = await scripts.client.closeSale(saleKeys(scripts.prefix, keys.saleId).sale, args.now);
  return parseReply<CloseSaleReply>('closeSale', reply, {
    OK: ([at]) => {
      const closedAt = integer(at);
      return closedAt === undefined ? undefined : ({ code: 'OK', closedAt } as const);
    },
  });
}
