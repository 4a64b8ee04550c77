// expireDue.lua: the sweeper's batch expiry on one stock shard — every given order still pending
// at or after its deadline expires in one atomic step, its units given back once to the shard
// that sold them; the rest are left alone.
import { shardKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { flag, integer, parseReply } from './reply.ts';

/** The stock shard whose orders a batch expires (the shard every one of them names). */
export interface ExpiryShard {
  readonly saleId: string;
  readonly sku: string;
  readonly shard: number;
}

/** What the shard got back from a batch. */
export interface ShardExpiries {
  readonly units: number;
  /** The shard went from no units to available (and is listed). */
  readonly reopened: boolean;
  /** The orders expired now, each exactly once across every sweeper. */
  readonly orderIds: readonly string[];
  /** Ids whose record was gone (TTL ran out): dropped from the deadlines, nothing given back. */
  readonly gone: readonly string[];
}

export type ExpireDueReply = { readonly code: 'EXPIRED' } & ShardExpiries;

const isIdList = (value: unknown): value is string[] => Array.isArray(value) && value.every((id) => typeof id === 'string');

/** Expires the due ones among `orderIds` (all of `shard`); an empty list costs no call. */
export async function expireDue(scripts: Scripts, shard: ExpiryShard, orderIds: readonly string[], now: number): Promise<ExpireDueReply> {
  if (orderIds.length === 0) return { code: 'EXPIRED', units: 0, reopened: false, orderIds: [], gone: [] };
  const names = shardKeys(scripts.prefix, shard.saleId, shard.sku, shard.shard);
  const keys = [names.outbox, names.deadlines, names.item, names.users, ...orderIds.map((id) => names.order(id))];
  const reply = await scripts.client.expireDue(keys.length, ...keys, now, shard.sku, shard.shard, ...orderIds);
  // WRONG_SHARD (an order of another shard) is a bug here, never an outcome: like any code
  // without a parser or refusal, it throws UnexpectedScriptReply.
  return parseReply<ExpireDueReply>('expireDue', reply, {
    EXPIRED: ([units, reopened, expired, gone]) => {
      const count = integer(units);
      const isReopened = flag(reopened);
      if (count === undefined || isReopened === undefined || !isIdList(expired) || !isIdList(gone)) return undefined;
      return { code: 'EXPIRED', units: count, reopened: isReopened, orderIds: expired, gone };
    },
  });
}
