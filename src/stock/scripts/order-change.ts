// The keys payOrder and releaseOrder share: an order changes its record, gives units back to its
// item and its user's live quantity, appends to the outbox and leaves the deadlines.
import { saleKeys } from '../keys.ts';

/** What an order's keys are named after. */
export interface OrderKeys {
  readonly saleId: string;
  readonly orderId: string;
  readonly sku: string;
}

export function orderChangeKeys(prefix: string, { saleId, orderId, sku }: OrderKeys): [string, string, string, string, string] {
  const names = saleKeys(prefix, saleId);
  return [names.order(orderId), names.item(sku), names.users(sku), names.outbox, names.deadlines];
}
