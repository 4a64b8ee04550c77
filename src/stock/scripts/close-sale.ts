// closeSale-1.lua: closes the sale's anchor (the first close wins: its time is the sale's
// closedAt C), or a shard's copy of the sale with C. Monotonic, so a retry is harmless.
import { anchorKey, shardKeys, type ShardRef } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

/** closedAt: the first close time when it was already closed. */
export type CloseSaleReply = { readonly code: 'OK'; readonly closedAt: number } | Refusal<'closeSale'>;

/** Closes the sale's anchor at `now` (or answers the time it was first closed). */
export function closeAnchor(scripts: Scripts, saleId: string, now: number): Promise<CloseSaleReply> {
  return run(scripts, anchorKey(scripts.prefix, saleId), now);
}

/** Carries the sale's closedAt C into one shard's copy of the sale. */
export function closeShard(scripts: Scripts, ref: ShardRef, closedAt: number): Promise<CloseSaleReply> {
  return run(scripts, shardKeys(scripts.prefix, ref.saleId, ref.sku, ref.shard).sale, closedAt);
}

async function run(scripts: Scripts, key: string, at: number): Promise<CloseSaleReply> {
  const reply = await scripts.client.closeSale(key, at);
  return parseReply<CloseSaleReply>('closeSale', reply, {
    OK: ([value]) => {
      const closedAt = integer(value);
      return closedAt === undefined ? undefined : ({ code: 'OK', closedAt } as const);
    },
  });
}
