// How late expired stock came back, from samples of an item's available units taken while orders
// were placed and left unpaid (the expiry storm test and bench/expiry-storm.ts judge with it).
// Pure. With no payments or cancels, units come back only by expiry, and the sweeper expires in
// deadline order, so after `expired` expiries the oldest order still held is deadlines[expired].

export interface StockSample {
  /** When the read was sent (ms). */
  readonly at: number;
  /** Orders accepted when the read was sent (a lower bound at the moment Redis read). */
  readonly placed: number;
  readonly available: number;
}

export interface ExpiryLag {
  /** The longest any unit stayed held after its order's deadline, over the samples. */
  readonly worstUnitLagMs: number;
  /** The first sample with every unit back, or undefined if none. */
  readonly allBackAt: number | undefined;
  /** From the last deadline to allBackAt (the lag of the last unit back). */
  readonly lastUnitLagMs: number | undefined;
  /** More units than were ever taken came back at some sample (a double release). */
  readonly overReleased: boolean;
}

/** `deadlines`: every accepted order's deadline; stock: the item's units before the storm. */
export function expiryLag(stock: number, deadlines: readonly number[], samples: readonly StockSample[]): ExpiryLag {
  const sorted = [...deadlines].sort((a, b) => a - b);
  const last = sorted.at(-1);
  let worst = 0;
  let allBackAt: number | undefined;
  let overReleased = false;
  for (const sample of samples) {
    if (sample.available > stock) overReleased = true;
    // Units out = placed − expired; a read placed a little later than counted only lowers this.
    const expired = Math.max(0, sample.placed - (stock - sample.available));
    const oldestHeld = sorted[expired];
    if (oldestHeld !== undefined && oldestHeld <= sample.at && expired < sample.placed) worst = Math.max(worst, sample.at - oldestHeld);
    if (allBackAt === undefined && sample.placed === sorted.length && sample.available === stock) allBackAt = sample.at;
  }
  return {
    worstUnitLagMs: worst,
    allBackAt,
    lastUnitLagMs: allBackAt === undefined || last === undefined ? undefined : Math.max(0, allBackAt - last),
    overReleased,
  };
}
