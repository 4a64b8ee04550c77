// The one table of refusals: every code a script answers when it decides against the change,
// by script. The codes are the API's error codes, so routes map them to HTTP without
// interpreting them, and nothing else lists them.
export const REFUSALS = {
  reserveOrder: [
    'RATE_LIMITED',
    'SALE_NOT_FOUND',
    'ITEM_NOT_FOUND',
    'SALE_NOT_STARTED',
    'SALE_ENDED',
    'ITEM_DELISTED',
    'SOLD_OUT',
    'INSUFFICIENT_STOCK',
    'PER_USER_LIMIT_EXCEEDED',
    'IDEMPOTENCY_KEY_REUSED',
  ],
  payOrder: ['ORDER_NOT_FOUND', 'ORDER_ALREADY_PAID', 'ORDER_CANCELLED', 'ORDER_EXPIRED', 'ORDER_REJECTED'],
  releaseOrder: ['ORDER_NOT_FOUND', 'ORDER_ALREADY_PAID', 'ORDER_EXPIRED', 'ORDER_REJECTED'],
  expireDue: [],
  loadSale: ['SALE_EXISTS'],
  loadShard: [],
  closeSale: ['SALE_NOT_FOUND'],
  delistItem: ['ITEM_NOT_FOUND'],
  relistItem: ['ITEM_NOT_FOUND'],
  restockItem: ['ITEM_NOT_FOUND'],
  ackOutbox: [],
  transferOut: ['ITEM_NOT_FOUND'],
  transferIn: ['ITEM_NOT_FOUND'],
  transferDone: [],
} as const satisfies Record<string, readonly string[]>;

export type ScriptName = keyof typeof REFUSALS;
export const SCRIPT_NAMES = Object.keys(REFUSALS) as ScriptName[];

export type RefusalOf<S extends ScriptName> = (typeof REFUSALS)[S][number];
/** Every refusal code of every script. */
export type RefusalCode = RefusalOf<ScriptName>;
/** A refusal as a binding returns it; `detail` is the number some refusals carry (e.g. units left). */
export type Refusal<S extends ScriptName> = { readonly code: RefusalOf<S>; readonly detail?: number };

/** reserveOrder's refusals: the outcomes of an order attempt other than accepted or replayed. */
export const RESERVE_REFUSALS = REFUSALS.reserveOrder;
export type ReserveRefusal = RefusalOf<'reserveOrder'>;
/** payOrder's and releaseOrder's refusals. */
export type OrderChangeRefusal = RefusalOf<'payOrder' | 'releaseOrder'>;

export function refusalOf<S extends ScriptName>(script: S, code: unknown): RefusalOf<S> | undefined {
  const codes: readonly unknown[] = REFUSALS[script];
  return codes.includes(code) ? (code as RefusalOf<S>) : undefined;
}
