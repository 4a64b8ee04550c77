// The sold-out fast path: once Redis says an item is sold out or delisted (or its sale ended),
// this process answers further attempts from memory. A reopening (restock, relist, released
// stock) clears the mark through pub/sub; a short TTL bounds staleness if a message is lost.
import type { ReserveRefusal } from './scripts/refusals.ts';

export type ClosedCode = Extract<ReserveRefusal, 'SOLD_OUT' | 'ITEM_DELISTED' | 'SALE_ENDED'>;

const SALE_WIDE = '';

export class ClosedItems {
  private readonly marks = new Map<string, { code: ClosedCode; until: number }>();

  constructor(private readonly ttlMs = 1_000) {}

  private static key(saleId: string, sku: string): string {
    return `${saleId}\u0000${sku}`;
  }

  mark(saleId: string, sku: string | undefined, code: ClosedCode, now = Date.now()): void {
    this.marks.set(ClosedItems.key(saleId, sku ?? SALE_WIDE), { code, until: now + this.ttlMs });
  }

  /** The remembered refusal for this item (or its whole sale), if still fresh. */
  get(saleId: string, sku: string, now = Date.now()): ClosedCode | undefined {
    for (const key of [ClosedItems.key(saleId, SALE_WIDE), ClosedItems.key(saleId, sku)]) {
      const mark = this.marks.get(key);
      if (mark && mark.until > now) return mark.code;
      if (mark) this.marks.delete(key);
    }
    return undefined;
  }

  reopen(saleId: string, sku: string): void {
    this.marks.delete(ClosedItems.key(saleId, sku));
  }
}
