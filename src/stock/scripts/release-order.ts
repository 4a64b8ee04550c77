// releaseOrder-5.lua: cancels a pending order (its owner, or an operator), giving its units back
// exactly once; a cancel at or after the deadline expires it instead.
import { orderChangeKeys, type OrderKeys } from './order-change.ts';
import type { Scripts } from './registry.ts';
import { flag, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface ReleaseOrderArgs {
  /** The cancelling user; '' for operators (any user's order). */
  readonly userId: string;
  readonly now: number;
  /** A payment outage holds deadlines: a late cancel cancels instead of expiring the order. */
  readonly outage?: boolean;
}

export type ReleasedStatus = 'cancelled' | 'expired';

export type ReleaseOrderReply =
  /** Released now (expired when at or after the deadline); reopened: the item went from sold out to available. */
  | { readonly code: 'RELEASED'; readonly status: ReleasedStatus; readonly reopened: boolean }
  /** Cancelled before: a no-op. */
  | { readonly code: 'ALREADY'; readonly status: 'cancelled' }
  | Refusal<'releaseOrder'>;

const isReleased = (value: unknown): value is ReleasedStatus => value === 'cancelled' || value === 'expired';

export async function releaseOrder(scripts: Scripts, keys: OrderKeys, args: ReleaseOrderArgs): Promise<ReleaseOrderReply> {
  const reply = await scripts.client.releaseOrder(...orderChangeKeys(scripts.prefix, keys), args.userId, args.now, args.outage ? 1 : 0);
  return parseReply<ReleaseOrderReply>('releaseOrder', reply, {
    RELEASED: ([status, reopened]) => {
      const value = flag(reopened);
      return isReleased(status) && value !== undefined ? ({ code: 'RELEASED', status, reopened: value } as const) : undefined;
    },
    ALREADY: ([status]) => (status === 'cancelled' ? ({ code: 'ALREADY', status } as const) : undefined),
  });
}
