// transferIn-2.lua: the target's credit of an exactly-once transfer (once per transfer id).
import { shardKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { flag, integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';
import { runAcked, type ReplicaAck } from './acked.ts';
import type { TransferShard } from './transfer-out.ts';

export interface TransferInArgs {
  readonly transferId: string;
  /** The quantity the donor's transferOut debited under this id. */
  readonly quantity: number;
}

export type TransferInReply =
  /** reopened: the shard had nothing available and the item is listed: announce it. */
  | { readonly code: 'OK'; readonly availableAfter: number; readonly reopened: boolean }
  | { readonly code: 'ALREADY'; readonly quantity: number }
  | Refusal<'transferIn'>;

export async function transferIn(scripts: Scripts, target: TransferShard, args: TransferInArgs, ack?: ReplicaAck): Promise<{ reply: TransferInReply; acknowledgedBy?: number }> {
  if (!Number.isInteger(args.quantity) || args.quantity < 1) throw new RangeError(`transferIn wants a quantity >= 1, not ${args.quantity}`);
  const keys = shardKeys(scripts.prefix, target.saleId, target.sku, target.shard);
  const argv = [keys.item, keys.transfersIn, args.transferId, args.quantity] as const;
  if (!ack) return { reply: parse(await scripts.client.transferIn(...argv)) };
  const acked = await runAcked(scripts.client, (pipeline) => pipeline.transferIn(...argv), ack);
  return { reply: parse(acked.reply), acknowledgedBy: acked.acknowledgedBy };
}

function parse(reply: unknown): TransferInReply {
  return parseReply<TransferInReply>('transferIn', reply, {
    OK: ([after, reopenedFlag]) => {
      const [availableAfter, reopened] = [integer(after), flag(reopenedFlag)];
      return availableAfter === undefined || reopened === undefined ? undefined : ({ code: 'OK', availableAfter, reopened } as const);
    },
    ALREADY: ([qty]) => {
      const quantity = integer(qty);
      return quantity === undefined ? undefined : ({ code: 'ALREADY', quantity } as const);
    },
  });
}
