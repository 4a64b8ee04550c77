// reserveOrder-9.lua: counts the attempt against the shopper's per-second limit, decides it and,
// when it is accepted, records it (stock, the user's live quantity, order record, outbox entry,
// deadline, idempotency key) in one step.
import { saleKeys } from '../keys.ts';
import type { Scripts } from './registry.ts';
import { flag, integer, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
/** An order record outlives its payment deadline by at most this long (see reserveOrder). */
export const ORDER_RETENTION_MS = 24 * 60 * 60 * 1000;

/** What the keys are named after. */
export interface ReserveOrderKeys {
  readonly saleId: string;
  readonly sku: string;
  readonly userId: string;
  /** The new order's id, chosen by the caller (UUIDv7). */
  readonly orderId: string;
  /** undefined or '': none. */
  readonly idempotencyKey?: string | undefined;
}

export interface ReserveOrderArgs {
  readonly quantity: number;
  readonly now: number;
  readonly idempotencyTtlSeconds?: number;
  readonly orderRetentionMs?: number;
  /** Attempts a user may make on the item per clock second (of `now`); 0 or absent: no limit. */
  readonly attemptsPerSecond?: number;
}

/** The accepted order's fields as the script recorded them (its status is pending_payment). */
export interface ReservedOrder {
  readonly id: string;
  readonly saleId: string;
  readonly sku: string;
  readonly userId: string;
  readonly quantity: number;
  readonly unitPrice: number;
  readonly amount: number;
  readonly idempotencyKey: string | null;
  /** Times in ms since the epoch. */
  readonly createdAt: number;
  readonly expiresAt: number;
}

export type ReserveOrderReply =
  | { readonly code: 'OK'; readonly order: ReservedOrder; readonly availableAfter: number; readonly delistedNow: boolean; readonly soldOutNow: boolean }
  /** The key already made this very order. */
  | { readonly code: 'REPLAY'; readonly orderId: string }
  | Refusal<'reserveOrder'>;

export async function reserveOrder(scripts: Scripts, keys: ReserveOrderKeys, args: ReserveOrderArgs): Promise<ReserveOrderReply> {
  const { saleId, sku, userId, orderId } = keys;
  const idempotencyKey = keys.idempotencyKey ?? '';
  const { quantity, now } = args;
  const names = saleKeys(scripts.prefix, saleId);
  const reply = await scripts.client.reserveOrder(
    names.sale,
    names.item(sku),
    names.users(sku),
    // Unused without a key; still a key of the sale's slot.
    names.idempotency(userId, idempotencyKey || '-'),
    names.order(orderId),
    names.outbox,
    names.deadlines,
    names.userOrders(userId),
    names.attempts(sku, userId, Math.floor(now / 1000)),
    saleId,
    sku,
    orderId,
    userId,
    quantity,
    now,
    idempotencyKey,
    args.idempotencyTtlSeconds ?? IDEMPOTENCY_TTL_SECONDS,
    args.orderRetentionMs ?? ORDER_RETENTION_MS,
    args.attemptsPerSecond ?? 0,
  );
  return parseReply<ReserveOrderReply>('reserveOrder', reply, {
    OK: ([available, price, expires, delisted, soldOut]) => {
      const [availableAfter, unitPrice, expiresAt] = [integer(available), integer(price), integer(expires)];
      const [delistedNow, soldOutNow] = [flag(delisted), flag(soldOut)];
      if (availableAfter === undefined || unitPrice === undefined || expiresAt === undefined) return undefined;
      if (delistedNow === undefined || soldOutNow === undefined) return undefined;
      const order: ReservedOrder = {
        id: orderId,
        saleId,
        sku,
        userId,
        quantity,
        unitPrice,
        amount: unitPrice * quantity,
        idempotencyKey: idempotencyKey || null,
        createdAt: now,
        expiresAt,
      };
      return { code: 'OK', order, availableAfter, delistedNow, soldOutNow } as const;
    },
    REPLAY: ([orderId]) => (typeof orderId === 'string' ? ({ code: 'REPLAY', orderId } as const) : undefined),
  });
}
