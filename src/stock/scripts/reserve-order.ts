// reserveOrder-8.lua: on the shopper's home stock shard, counts the attempt against the
// shopper's per-second limit, decides it and, when it is accepted, records it (stock, the user's
// live quantity, order record, outbox entry, deadline, idempotency key) in one step.
import { shardKeys } from '../keys.ts';
import { runAcked, type ReplicaAck } from './acked.ts';
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
  /** The home shard k of the user (homeShard) and K, the item's shard count. */
  readonly shard: number;
  /** The new order's id, minted by the caller for the shard's tag (mintOrderId). */
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
  /** The stock shard k that holds it (on the Redis record; Postgres rows do not carry it). */
  readonly shard?: number;
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
  /** The key already made this very order, or this very command already ran (a resend). */
  | { readonly code: 'REPLAY'; readonly orderId: string }
  /** The minted order id names another order: mint another. */
  | { readonly code: 'ORDER_ID_TAKEN' }
  /** K > 1: the shard holds fewer than the quantity; nothing was written but the attempt count. */
  | { readonly code: 'NEED_STOCK'; readonly available: number; readonly liveQuantity: number; readonly perUserLimit: number }
  | Refusal<'reserveOrder'>;

export async function reserveOrder(scripts: Scripts, keys: ReserveOrderKeys, args: ReserveOrderArgs): Promise<ReserveOrderReply> {
  return parse(keys, args, await scripts.client.reserveOrder(...commandArguments(scripts.prefix, keys, args)));
}

/**
 * reserveOrder followed by WAIT on the same connection (acked.ts): the reply, and how many
 * replicas acknowledged every write sent on that connection so far (the reserve included).
 */
export async function reserveOrderAcked(
  scripts: Scripts,
  keys: ReserveOrderKeys,
  args: ReserveOrderArgs,
  ack: ReplicaAck,
): Promise<{ readonly reply: ReserveOrderReply; readonly acknowledgedBy: number }> {
  const acked = await runAcked(scripts.client, (pipeline) => pipeline.reserveOrder(...commandArguments(scripts.prefix, keys, args)), ack);
  return { reply: parse(keys, args, acked.reply), acknowledgedBy: acked.acknowledgedBy };
}

function commandArguments(prefix: string, keys: ReserveOrderKeys, args: ReserveOrderArgs) {
  const { saleId, sku, userId, orderId } = keys;
  const idempotencyKey = keys.idempotencyKey ?? '';
  const { quantity, now } = args;
  const names = shardKeys(prefix, saleId, sku, keys.shard);
  return [
    names.sale,
    names.item,
    names.users,
    // Unused without a key; still a key of the shard's slot.
    names.idempotency(userId, idempotencyKey || '-'),
    names.order(orderId),
    names.outbox,
    names.deadlines,
    names.attempts(userId, Math.floor(now / 1000)),
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
    keys.shard,
  ] as const;
}

function parse(keys: ReserveOrderKeys, args: ReserveOrderArgs, reply: unknown): ReserveOrderReply {
  const { saleId, sku, userId, orderId } = keys;
  const idempotencyKey = keys.idempotencyKey ?? '';
  const { quantity, now } = args;
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
        shard: keys.shard,
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
    ORDER_ID_TAKEN: () => ({ code: 'ORDER_ID_TAKEN' }) as const,
    NEED_STOCK: ([units, live, limit]) => {
      const [available, liveQuantity, perUserLimit] = [integer(units), integer(live), integer(limit)];
      if (available === undefined || liveQuantity === undefined || perUserLimit === undefined) return undefined;
      return { code: 'NEED_STOCK', available, liveQuantity, perUserLimit } as const;
    },
  });
}
