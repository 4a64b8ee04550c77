// transferDone-3.lua: closes a transfer on the donor once the target credited it.
import { shardKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { integer, parseReply } from './reply.ts';
import type { TransferShard } from './transfer-out.ts';

export type TransferDoneReply =
  | { readonly code: 'OK'; readonly quantity: number }
  | { readonly code: 'ALREADY'; readonly quantity: number }
  /** No debit under this id on the donor. */
  | { readonly code: 'UNKNOWN' };

export async function transferDone(scripts: Scripts, donor: TransferShard, transferId: string): Promise<TransferDoneReply> {
  const keys = shardKeys(scripts.prefix, donor.saleId, donor.sku, donor.shard);
  const reply = await scripts.client.transferDone(keys.item, keys.transfersOut, keys.transfersSent, transferId);
  const withQuantity = (code: 'OK' | 'ALREADY') => ([qty]: readonly unknown[]) => {
    const quantity = integer(qty);
    return quantity === undefined ? undefined : ({ code, quantity } as const);
  };
  return parseReply<TransferDoneReply>('transferDone', reply, {
    OK: withQuantity('OK'),
    ALREADY: withQuantity('ALREADY'),
    UNKNOWN: () => ({ code: 'UNKNOWN' }) as const,
  });
}
