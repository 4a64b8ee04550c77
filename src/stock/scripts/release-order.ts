// releaseOrder-5.lua: cancels a pending order (its owner) or expires it (the sweeper), giving
// its units back exactly once; a cancel at or after the deadline expires it instead.
import { orderChangeKeys, type OrderKeys } from './order-change.ts';
import type { Scripts } from './registry.ts';
import { flag, parseReply } from './reply.ts';
import type { Refusal } from './refusals.ts';

export interface ReleaseOrderArgs {
  readonly action: 'cancel' | 'expire';
  /** The cancelling user; '' for the sweeper and operators (any user's order). */
  readonly userId: string;
  readonly now: number;
}

export type ReleasedStatus = 'cancelled' | 'expired';

export type ReleaseOrderReply =
  /** Released now; reopened: the item went from sold out to available. */
  | { readonly code: 'RELEASED'; readonly status: ReleasedStatus; readonly reopened: boolean }
  /** Already in the state asked for: a no-op. */
  | { readonly code: 'ALREADY'; readonly status: ReleasedStatus }
  /** An expiry asked before the deadline. */
  | { readonly code: 'NOT_DUE' }
  | Refusal<'releaseOrder'>;

const isReleased = (value: unknown): value is ReleasedStatus => value === 'cancelled' || value === 'expired';

export async function releaseOrder(scripts: Scripts, keys: OrderKeys, args: ReleaseOrderArgs): Promise<ReleaseOrderReply> {
  const reply = await scripts.client.releaseOrder(...orderChangeKeys(scripts.prefix, keys), args.action, args.userId, args.now);
  return parseReply<ReleaseOrderReply>('releaseOrder', reply, {
    RELEASED: ([status, reopened]) => {
      const value = flag(reopened);
      return isReleased(status) && value !== undefined ? ({ code: 'RELEASED', status, reopened: value } as const) : undefined;
    },
    ALREADY: ([status]) => (isReleased(status) ? ({ code: 'ALREADY', status } as const) : undefined),
    NOT_DUE: () => ({ code: 'NOT_DUE' }) as const,
  });
}
