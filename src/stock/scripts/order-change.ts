// The keys payOrder and releaseOrder share: an order changes its record, gives units back to its
// shard's stock and its user's live quantity there, appends to the shard's outbox and leaves the
// shard's deadlines. All of them live in the order's own shard slot (layout 2).
import { shardKeys } from '../keys.ts';

/** What an order's keys are named after: its id and the stock shard that made it. */
export interface OrderKeys {
  readonly saleId: string;
  readonly orderId: string;
  readonly sku: string;
  /**
   * The shard the order's record names (its `shard` field), never one recomputed from the user:
   * units go back where they were taken.
   */
  readonly shard: number;
}

export function orderChangeKeys(prefix: string, { saleId, orderId, sku, shard }: OrderKeys): [string, string, string, string, string] {
  const names = shardKeys(prefix, saleId, sku, shard);
  return [names.order(orderId), names.item, names.users, names.outbox, names.deadlines];
}
