// The per-process half of the shopper's attempt limit: counts this process's attempts per
// (sale, item, user) in the current clock second, so an attempt answered from memory (a sold-out
// mark) can be refused 429 without a Redis round trip. Redis counts the attempts that reach it
// (reserveOrder), exactly, across processes; this count is only ever a lower bound of a shopper's
// attempts in the second, so refusing on it never refuses anyone Redis would let through.
export class AttemptWindow {
  private window = -1;
  private readonly counts = new Map<string, number>();

  /**
   * @param limit attempts per shopper per item per second; 0 = no limit
   * @param maxTracked bound on memory: shoppers beyond it in one second are not counted here
   *   (their attempts that reach Redis are still limited there)
   */
  constructor(
    readonly limit: number,
    private readonly maxTracked = 100_000,
  ) {}

  /** Counts one attempt at `now`; false when this process alone has now seen more than the limit. */
  admit(saleId: string, sku: string, userId: string, now: number): boolean {
    if (this.limit <= 0) return true;
    const window = Math.floor(now / 1000);
    if (window !== this.window) {
      this.window = window;
      this.counts.clear();
    }
    // Sale ids and SKUs are identifiers (no NUL), so the user id, last, cannot forge a neighbour.
    const key = `${saleId}\u0000${sku}\u0000${userId}`;
    const seen = this.counts.get(key);
    if (seen === undefined) {
      if (this.counts.size < this.maxTracked) this.counts.set(key, 1);
      return true;
    }
    this.counts.set(key, seen + 1);
    return seen < this.limit;
  }

  /** How many shoppers this second's window holds (bounded by maxTracked). */
  get tracked(): number {
    return this.counts.size;
  }
}
