// How often a cluster process may be restarted: a process that keeps dying (a bad setting, a store that
// refuses every connection) must stop the cluster, so the supervisor above it (compose, systemd) sees it.

export class RestartBudget {
  private readonly restarts: number[] = [];

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  /** Spends one restart at `now` (ms); false when `limit` restarts were already spent within the window. */
  take(now: number): boolean {
    while (this.restarts.length > 0 && this.restarts[0]! <= now - this.windowMs) this.restarts.shift();
    if (this.restarts.length >= this.limit) return false;
    this.restarts.push(now);
    return true;
  }
}
