// Detecting lost Redis state and rebuilding it, in every process. A sale Postgres says is live
// (not past its payment windows) whose anchor or any shard is missing in Redis is "lost": it is
// rebuilt from Postgres (rebuild.ts; racing processes are serialised there), and until then its
// storefront answers 503 SALE_RECOVERING, readiness lists it, the gauge counts it and the
// operator sees `sale_state_lost`, then `sale_rebuilt`.
//
// One read finding the sale missing is only a suspicion, confirmed by a second look `confirmMs`
// later: during a Cluster failover a master that restarted without its data answers for its old
// slots (with nothing) until it learns it was replaced, and a read that reaches it sees a sale
// that its promoted replica still holds whole. The second look waits that out; the rebuild's
// writes leave alone whatever they find whole (write-shard.ts), so even a stale pair of reads
// cannot overwrite a live shard. Detection runs on a timer in the
// worker role (so an idle sale is noticed too) and on demand in every process, when a storefront
// route is about to answer SALE_NOT_FOUND or ITEM_NOT_FOUND for a sale Postgres knows.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../logger.ts';
import { isOrderId } from '../orders/order.ts';
import type { RedisClient } from '../redis/connection.ts';
import type { SaleRebuilder } from './rebuild.ts';
import { damage, inspectSale, type SaleShape } from './redis-state.ts';

export interface RecoveryMetrics {
  readonly recovering: Gauge;
  readonly rebuilds: Counter<'outcome'>;
}

export function createRecoveryMetrics(registry: Registry): RecoveryMetrics {
  return {
    recovering: new Gauge({
      name: 'flashsale_sales_recovering',
      help: 'Live sales whose Redis state is lost and not yet rebuilt from Postgres (storefront answers 503 SALE_RECOVERING)',
      // Every process sees the same sales: a cluster's aggregate is the largest count, not the sum.
      aggregator: 'max',
      registers: [registry],
    }),
    rebuilds: new Counter({
      name: 'flashsale_sale_rebuilds_total',
      help: 'Sales rebuilt from Postgres after their Redis state was lost, by outcome (rebuilt, failed); a rebuild another process did first is not counted',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
  };
}

export interface RecoveryOptions {
  /** How often every live sale is checked. */
  readonly intervalMs?: number;
  /** A sale created this recently may still be loading: it is never called lost. */
  readonly loadingGraceMs?: number;
  /** A sale read as missing is called lost only if it is still missing this much later. */
  readonly confirmMs?: number;
}

export interface LiveSale {
  readonly id: string;
  readonly createdAt: number;
}

const LIVE_CACHE_MS = 1_000;
const FAILURE_LOG_EVERY_MS = 30_000;
/** How long stopping waits for a check or rebuild in hand (Redis failing over can hold one up). */
const STOP_WAIT_MS = 2_000;

/** Sales not past their payment windows (not closed or ended a payment window ago or more): the ones Redis must hold. */
export async function liveSales(pool: Pool, now = Date.now()): Promise<LiveSale[]> {
  const { rows } = await pool.query<{ id: string; created_at: Date }>(
    `SELECT id, created_at FROM sales
     WHERE COALESCE(closed_at, ends_at) + payment_window_seconds * interval '1 second' > $1 ORDER BY id`,
    [new Date(now)],
  );
  return rows.map((row) => ({ id: row.id, createdAt: row.created_at.getTime() }));
}

export class SaleRecovery {
  private readonly lost = new Map<string, { since: number }>();
  /** Sales read as missing once, awaiting their second look (its timer). */
  private readonly suspects = new Map<string, { since: number; timer: NodeJS.Timeout }>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly shapes = new Map<string, SaleShape>();
  private live: { sales: Map<string, LiveSale>; until: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastFailureLogAt = 0;
  private ticking: Promise<void> | undefined;
  private readonly intervalMs: number;
  private readonly loadingGraceMs: number;
  private readonly confirmMs: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly pool: Pool,
    private readonly rebuilder: SaleRebuilder,
    private readonly metrics: RecoveryMetrics,
    private readonly logger: Logger,
    options: RecoveryOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 1_000;
    this.loadingGraceMs = options.loadingGraceMs ?? 2_000;
    this.confirmMs = options.confirmMs ?? 1_000;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.ticking) return;
      this.ticking = this.tick()
        .catch((err: unknown) => {
          // Redis or Postgres away: said once per outage-ish, not every second (readiness says the rest).
          if (Date.now() - this.lastFailureLogAt < FAILURE_LOG_EVERY_MS) return;
          this.lastFailureLogAt = Date.now();
          this.logger.warn({ err }, 'checking sales for lost Redis state failed; retrying every check');
        })
        .finally(() => (this.ticking = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  /**
   * Stops checking and waits (a little) for the check and the rebuilds in hand. A rebuild cut short
   * is harmless: each shard is written whole or not at all, the anchor last, and the next process
   * to look finds the sale still lost and rebuilds it.
   */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const { timer } of this.suspects.values()) clearTimeout(timer);
    this.suspects.clear();
    const pending = Promise.allSettled([this.ticking, ...this.inFlight.values()]);
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([pending, new Promise((resolve) => (timeout = setTimeout(resolve, STOP_WAIT_MS)))]);
    clearTimeout(timeout);
  }

  /** Sales lost and not yet rebuilt, for readiness. */
  degraded(): { saleId: string; since: string }[] {
    return [...this.lost].map(([saleId, { since }]) => ({ saleId, since: new Date(since).toISOString() }));
  }

  /** Checks every live sale once; lost ones are rebuilt (awaited, so a test can tick and look). */
  async tick(now = Date.now()): Promise<void> {
    const live = await this.liveSales(now, true);
    for (const saleId of this.lost.keys()) if (!live.has(saleId)) this.lost.delete(saleId);
    const checks = [...live.values()]
      .filter((sale) => now - sale.createdAt >= this.loadingGraceMs)
      .map(async (sale) => {
        if (await this.check(sale.id, now)) await this.kick(sale.id);
      });
    // One sale that cannot be read (a key of the wrong type, say) must not hide the others.
    for (const result of await Promise.allSettled(checks)) {
      if (result.status === 'rejected') this.logger.warn({ err: result.reason as unknown }, 'checking a sale for lost Redis state failed');
    }
    this.metrics.recovering.set(this.lost.size);
  }

  /**
   * Whether a storefront "not found" for this sale (and SKU) is really the sale being rebuilt:
   * true when Postgres has it live (and the SKU among its items). A lost sale is rebuilt from here
   * too, so the first shopper to notice starts it.
   */
  async recovering(saleId: string, sku?: string, now = Date.now()): Promise<boolean> {
    const lost = this.lost.has(saleId);
    const sale = lost ? undefined : (await this.liveSales(now, false)).get(saleId);
    if (!lost && !sale) return false;
    const shape = await this.shape(saleId);
    if (!shape || (sku !== undefined && !shape.items.some((item) => item.sku === sku))) return false;
    if (lost) {
      void this.kick(saleId);
      return true;
    }
    // Still being created (Postgres first, then Redis): briefly unavailable, not lost.
    if (sale && now - sale.createdAt < this.loadingGraceMs) return true;
    if (await this.check(saleId, now)) void this.kick(saleId);
    // Found whole now: a rebuild finished between the route's read and this one; a retry succeeds.
    return true;
  }

  /** The sale of an order Postgres holds (for pay/cancel of an order whose record was lost). */
  async saleOfOrder(orderId: string): Promise<string | undefined> {
    if (!isOrderId(orderId)) return undefined;
    const { rows } = await this.pool.query<{ sale_id: string }>('SELECT sale_id FROM orders WHERE id = $1', [orderId]);
    return rows[0]?.sale_id;
  }

  /**
   * Looks at the sale in Redis; true when it is lost. Found missing for the first time, it is a
   * suspect, looked at again `confirmMs` later (by a timer, so a sale no one asks for again is
   * still settled); found missing again by then, it is marked lost (once). Found whole, it is
   * neither.
   */
  private async check(saleId: string, now: number): Promise<boolean> {
    const shape = await this.shape(saleId);
    if (!shape) return false;
    const found = damage(await inspectSale(this.redis, this.prefix, shape));
    const missing = found.anchor || found.shards.length > 0;
    const suspect = this.suspects.get(saleId);
    if (!missing || this.lost.has(saleId)) this.clearSuspect(saleId);
    if (missing && !this.lost.has(saleId)) {
      if (now - (suspect?.since ?? now) < this.confirmMs) {
        if (!suspect) this.suspect(saleId, now);
        return false;
      }
      this.clearSuspect(saleId);
      this.lost.set(saleId, { since: now });
      this.metrics.recovering.set(this.lost.size);
      this.logger.error(
        { event: 'sale_state_lost', saleId, anchorMissing: found.anchor, shardsMissing: found.shards.length, shards: shape.items.reduce((n, item) => n + item.shards, 0) },
        'a live sale\'s Redis state is lost; rebuilding it from Postgres',
      );
    }
    if (!missing && this.lost.has(saleId) && !this.inFlight.has(saleId)) this.lost.delete(saleId);
    return missing;
  }

  /** The second look at a sale read as missing: lost then, it is rebuilt; whole, forgotten. */
  private suspect(saleId: string, now: number): void {
    const timer = setTimeout(() => {
      this.check(saleId, Math.max(Date.now(), now + this.confirmMs))
        .then((lost) => (lost ? this.kick(saleId) : undefined))
        // Redis or Postgres away: the suspicion goes, and the next check starts a new one.
        .catch(() => this.clearSuspect(saleId));
    }, this.confirmMs);
    timer.unref();
    this.suspects.set(saleId, { since: now, timer });
  }

  private clearSuspect(saleId: string): void {
    clearTimeout(this.suspects.get(saleId)?.timer);
    this.suspects.delete(saleId);
  }

  /** Rebuilds the sale, once at a time in this process (rebuild.ts serialises processes). */
  private kick(saleId: string): Promise<void> {
    const running = this.inFlight.get(saleId);
    if (running) return running;
    const since = this.lost.get(saleId)?.since ?? Date.now();
    const work = this.rebuilder
      .rebuild(saleId)
      .then((outcome) => {
        this.lost.delete(saleId);
        if (outcome.kind !== 'rebuilt') return;
        this.metrics.rebuilds.inc({ outcome: 'rebuilt' });
        this.logger.warn(
          { event: 'sale_rebuilt', saleId, ...outcome, recoveringMs: Date.now() - since },
          outcome.migrated ? 'sale migrated to key layout 2 from Postgres' : 'sale rebuilt from Postgres',
        );
      })
      .catch((err: unknown) => {
        this.metrics.rebuilds.inc({ outcome: 'failed' });
        this.logger.error({ event: 'sale_rebuild_failed', saleId, err }, 'rebuilding a sale from Postgres failed; retrying on the next check');
      })
      .finally(() => {
        this.inFlight.delete(saleId);
        this.metrics.recovering.set(this.lost.size);
      });
    this.inFlight.set(saleId, work);
    return work;
  }

  private async shape(saleId: string): Promise<SaleShape | undefined> {
    const known = this.shapes.get(saleId);
    if (known) return known;
    const recorded = await this.rebuilder.recorded(saleId);
    if (!recorded) return undefined;
    // Items and their K never change after creation.
    const shape = { id: recorded.id, items: recorded.items.map((item) => ({ sku: item.sku, shards: item.shards })) };
    this.shapes.set(saleId, shape);
    return shape;
  }

  /** Live sales (liveSales), cached a second. */
  private async liveSales(now: number, fresh: boolean): Promise<Map<string, LiveSale>> {
    if (this.live && !fresh && this.live.until > now) return this.live.sales;
    const sales = new Map((await liveSales(this.pool, now)).map((sale) => [sale.id, sale]));
    for (const saleId of this.shapes.keys()) if (!sales.has(saleId)) this.shapes.delete(saleId);
    this.live = { sales, until: now + LIVE_CACHE_MS };
    return sales;
  }
}
