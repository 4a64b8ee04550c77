// The sold-out fast path: once Redis says an item is sold out or delisted (or its sale ended),
// this process answers further attempts on that item from memory. A reopening (restock, relist,
// released stock) clears the mark through pub/sub; a short TTL bounds staleness if a message is lost.
// Marks are per item, never sale-wide: only Redis can say that a SKU exists, so a made-up SKU of
// an ended sale still reaches reserveOrder and gets ITEM_NOT_FOUND (checked before SALE_ENDED).
import type { ReserveRefusal } from './scripts/refusals.ts';

export type ClosedCode = Extract<ReserveRefusal, 'SOLD_OUT' | 'ITEM_DELISTED' | 'SALE_ENDED'>;

export class ClosedItems {
  private readonly marks = new Map<string, { code: ClosedCode; until: number }>();

  constructor(private readonly ttlMs = 1_000) {}

  private static key(saleId: string, sku: string): string {
    return `${saleId}\u0000${sku}`;
  }

  mark(saleId: string, sku: string, code: ClosedCode, now = Date.now()): void {
    this.marks.set(ClosedItems.key(saleId, sku), { code, until: now + this.ttlMs });
  }

  /** The remembered refusal for this item, if still fresh. */
  get(saleId: string, sku: string, now = Date.now()): ClosedCode | undefined {
    const key = ClosedItems.key(saleId, sku);
    const mark = this.marks.get(key);
    if (mark && mark.until > now) return mark.code;
    if (mark) this.marks.delete(key);
    return undefined;
  }

  reopen(saleId: string, sku: string): void {
    this.marks.delete(ClosedItems.key(saleId, sku));
  }
}
