// expireDue.lua: the sweeper's batch expiry — every given order still pending at or after its
// deadline expires in one atomic step, its units given back once; the rest are left alone.
import { saleKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { flag, integer, parseReply } from './reply.ts';

/** An order the sweeper found due, with its item (read from its record). */
export interface DueOrder {
  readonly orderId: string;
  readonly sku: string;
}

/** What one item got back from a batch. */
export interface ItemExpiries {
  readonly sku: string;
  readonly units: number;
  /** The item went from sold out to available (and is listed). */
  readonly reopened: boolean;
  /** The orders expired now, each exactly once across every sweeper. */
  readonly orderIds: readonly string[];
}

export type ExpireDueReply = { readonly code: 'EXPIRED'; readonly items: readonly ItemExpiries[] };

function parseItem(value: unknown, skus: readonly string[]): ItemExpiries | undefined {
  if (!Array.isArray(value)) return undefined;
  const [index, units, reopened, ...orderIds] = value as unknown[];
  const position = integer(index);
  const sku = position === undefined ? undefined : skus[position - 1];
  const count = integer(units);
  const isReopened = flag(reopened);
  if (sku === undefined || count === undefined || isReopened === undefined || orderIds.length === 0) return undefined;
  if (!orderIds.every((id): id is string => typeof id === 'string')) return undefined;
  return { sku, units: count, reopened: isReopened, orderIds };
}

/** Expires the due ones among `orders` (all of sale `saleId`); an empty list costs no call. */
export async function expireDue(scripts: Scripts, saleId: string, orders: readonly DueOrder[], now: number): Promise<ExpireDueReply> {
  if (orders.length === 0) return { code: 'EXPIRED', items: [] };
  const names = saleKeys(scripts.prefix, saleId);
  const skus = [...new Set(orders.map((order) => order.sku))];
  const indexOf = new Map(skus.map((sku, i) => [sku, i + 1]));
  const keys = [
    names.outbox,
    names.deadlines,
    ...skus.flatMap((sku) => [names.item(sku), names.users(sku)]),
    ...orders.map((order) => names.order(order.orderId)),
  ];
  const args = [now, skus.length, ...skus, ...orders.map((order) => indexOf.get(order.sku) ?? 0)];
  const reply = await scripts.client.expireDue(keys.length, ...keys, ...args);
  // WRONG_ITEM (an order named with another item's keys) is a bug here, never an outcome: like
  // any code without a parser or refusal, it throws UnexpectedScriptReply.
  return parseReply<ExpireDueReply>('expireDue', reply, {
    EXPIRED: (values) => {
      const items = values.map((value) => parseItem(value, skus));
      return items.every((item): item is ItemExpiries => item !== undefined) ? { code: 'EXPIRED', items } : undefined;
    },
  });
}
