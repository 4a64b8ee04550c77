// The one place where reserveOrder's reply is turned into a typed outcome. Refusal codes are the
// API's error codes, so routes map them to HTTP without interpreting them.
export const REFUSAL_CODES = [
  'SALE_NOT_FOUND',
  'ITEM_NOT_FOUND',
  'SALE_NOT_STARTED',
  'SALE_ENDED',
  'ITEM_DELISTED',
  'SOLD_OUT',
  'INSUFFICIENT_STOCK',
  'PER_USER_LIMIT_EXCEEDED',
  'IDEMPOTENCY_KEY_REUSED',
] as const;
export type RefusalCode = (typeof REFUSAL_CODES)[number];

export type ReserveOutcome =
  | {
      readonly kind: 'accepted';
      readonly availableAfter: number;
      readonly unitPrice: number;
      readonly expiresAt: number;
      readonly delistedNow: boolean;
      readonly soldOutNow: boolean;
    }
  | { readonly kind: 'replayed'; readonly orderId: string }
  | { readonly kind: 'refused'; readonly code: RefusalCode; readonly detail?: number };

export class UnexpectedScriptReply extends Error {
  constructor(script: string, reply: unknown) {
    super(`${script} returned an unexpected reply: ${JSON.stringify(reply)}`);
    this.name = 'UnexpectedScriptReply';
  }
}

function isRefusal(code: unknown): code is RefusalCode {
  return (REFUSAL_CODES as readonly unknown[]).includes(code);
}

export function parseReserveReply(reply: unknown): ReserveOutcome {
  if (!Array.isArray(reply)) throw new UnexpectedScriptReply('reserveOrder', reply);
  const [code, ...rest] = reply as unknown[];
  if (code === 'OK') {
    const [availableAfter, unitPrice, expiresAt, delistedNow, soldOutNow] = rest.map(Number);
    if ([availableAfter, unitPrice, expiresAt].some((n) => n === undefined || Number.isNaN(n))) {
      throw new UnexpectedScriptReply('reserveOrder', reply);
    }
    return {
      kind: 'accepted',
      availableAfter: availableAfter!,
      unitPrice: unitPrice!,
      expiresAt: expiresAt!,
      delistedNow: delistedNow === 1,
      soldOutNow: soldOutNow === 1,
    };
  }
  if (code === 'REPLAY' && typeof rest[0] === 'string') return { kind: 'replayed', orderId: rest[0] };
  if (isRefusal(code)) return rest[0] === undefined ? { kind: 'refused', code } : { kind: 'refused', code, detail: Number(rest[0]) };
  throw new UnexpectedScriptReply('reserveOrder', reply);
}
