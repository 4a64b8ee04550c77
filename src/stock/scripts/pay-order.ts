// payOrder-5.lua: records a payment for a pending order, or expires it when its deadline has
// passed (its units given back once), so a payment racing the expiry has one winner.
import { orderChangeKeys, type OrderKeys } from './order-change.ts';
import type { Scripts } from './registry.ts';
import { flag, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface PayOrderArgs {
  /** The paying user; '' lets an operator pay any user's order. */
  readonly userId: string;
  readonly paymentRef: string;
  readonly now: number;
  /** A payment outage holds deadlines (src/orders/payment-outage.ts): lateness does not expire the order. */
  readonly outage?: boolean;
}

export type PayOrderReply =
  | { readonly code: 'PAID' }
  /** Paid before with this same reference: a no-op. */
  | { readonly code: 'ALREADY_PAID' }
  /** The deadline had passed: expired now, units given back; reopened: the item was sold out. */
  | { readonly code: 'EXPIRED_NOW'; readonly reopened: boolean }
  | Refusal<'payOrder'>;

export async function payOrder(scripts: Scripts, keys: OrderKeys, args: PayOrderArgs): Promise<PayOrderReply> {
  const reply = await scripts.client.payOrder(...orderChangeKeys(scripts.prefix, keys), args.userId, args.paymentRef, args.now, args.outage ? 1 : 0);
  return parseReply<PayOrderReply>('payOrder', reply, {
    PAID: () => ({ code: 'PAID' }) as const,
    ALREADY_PAID: () => ({ code: 'ALREADY_PAID' }) as const,
    EXPIRED_NOW: ([reopened]) => {
      const value = flag(reopened);
      return value === undefined ? undefined : ({ code: 'EXPIRED_NOW', reopened: value } as const);
    },
  });
}
