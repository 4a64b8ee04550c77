// transferOut-3.lua: the donor's debit of an exactly-once transfer between two shards of an item.
import { shardKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';
import { runAcked, type ReplicaAck } from './acked.ts';

/** One shard of one item. */
export interface TransferShard {
  readonly saleId: string;
  readonly sku: string;
  readonly shard: number;
}

export interface TransferOutArgs {
  /** The transfer's id X, minted once by the driver; every retry reuses it. */
  readonly transferId: string;
  /** The shard the units go to. */
  readonly to: number;
  /** The most units to move. */
  readonly want: number;
  /** Move nothing unless at least this many are available (>= 1). */
  readonly min: number;
  readonly now: number;
}

export type TransferOutReply =
  | { readonly code: 'OK'; readonly quantity: number; readonly availableAfter: number }
  /** X was debited before: the quantity it logged then. */
  | { readonly code: 'ALREADY'; readonly quantity: number }
  | { readonly code: 'EMPTY'; readonly available: number }
  | Refusal<'transferOut'>;

export async function transferOut(scripts: Scripts, donor: TransferShard, args: TransferOutArgs, ack?: ReplicaAck): Promise<{ reply: TransferOutReply; acknowledgedBy?: number }> {
  const keys = shardKeys(scripts.prefix, donor.saleId, donor.sku, donor.shard);
  const argv = [keys.item, keys.transfersOut, keys.transfersSent, args.transferId, args.to, args.want, args.min, args.now] as const;
  if (!Number.isInteger(args.want) || args.want < 1 || !Number.isInteger(args.min) || args.min < 1) {
    throw new RangeError(`transferOut wants integers >= 1 (want ${args.want}, min ${args.min})`);
  }
  if (!ack) return { reply: parse(await scripts.client.transferOut(...argv)) };
  const acked = await runAcked(scripts.client, (pipeline) => pipeline.transferOut(...argv), ack);
  return { reply: parse(acked.reply), acknowledgedBy: acked.acknowledgedBy };
}

function parse(reply: unknown): TransferOutReply {
  return parseReply<TransferOutReply>('transferOut', reply, {
    OK: ([qty, after]) => {
      const [quantity, availableAfter] = [integer(qty), integer(after)];
      return quantity === undefined || availableAfter === undefined ? undefined : ({ code: 'OK', quantity, availableAfter } as const);
    },
    ALREADY: ([qty]) => {
      const quantity = integer(qty);
      return quantity === undefined ? undefined : ({ code: 'ALREADY', quantity } as const);
    },
    EMPTY: ([units]) => {
      const available = integer(units);
      return available === undefined ? undefined : ({ code: 'EMPTY', available } as const);
    },
  });
}
