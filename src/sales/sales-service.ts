// Operator actions on sales, each recorded in Postgres and applied in Redis in the order that is
// safe if the second step fails (Postgres's guard may be looser than Redis, never tighter), and
// the shopper's view of a sale, cached for up to a second.
import type { Logger } from '../logger.ts';
import { CloseIncompleteError, type SaleCatalog } from './catalog.ts';
import type { SaleRepository, StoredSale } from './repository.ts';
import type { ShardRef } from '../stock/keys.ts';
import { itemState, saleStatus, shardRefsOf, type DelistReason, type ItemState, type ItemStock, type SaleDefinition, type SaleStatus } from './sale.ts';

export interface ItemView {
  readonly sku: string;
  readonly name: string;
  readonly unitPrice: number;
  readonly perUserLimit: number;
  readonly available: number;
  readonly state: ItemState;
  readonly stock: ItemStock;
  readonly initialStock: number;
}

export interface SaleView {
  readonly sale: StoredSale;
  readonly status: SaleStatus;
  readonly closedAt: number | null;
  readonly items: readonly ItemView[];
}

export type SaleActionError = 'SALE_NOT_FOUND' | 'ITEM_NOT_FOUND';
/** The anchor is closed but some shard could not be reached: retry the close (it is monotonic). */
export type CloseError = SaleActionError | 'CLOSE_INCOMPLETE';
export type RestockError = SaleActionError | 'STOCK_LIMIT_EXCEEDED';

export interface SaleEvents {
  onDelisted(saleId: string, sku: string, reason: DelistReason): void;
  onSaleKnown(sale: StoredSale | SaleDefinition): void;
}

const VIEW_TTL_MS = 1_000;
// Orders of a sale may sit only in Redis until its last payment window closes (the sale's end or
// close plus its payment window); this margin beyond that covers a late sweep or a slow persister.
const LIVE_MARGIN_MS = 24 * 60 * 60 * 1000;
// A forced refresh of the live sales happens at most this often, so lookups of unknown order
// ids cannot turn into a query per request.
const LIVE_REFRESH_MIN_MS = 100;

export class SalesService {
  private readonly views = new Map<string, { view: SaleView; until: number }>();
  private readonly definitions = new Map<string, StoredSale>();
  // Unknown ids are remembered briefly, so probing them does not cost a query per request.
  private readonly unknown = new Map<string, number>();
  private live: { ids: readonly string[]; until: number; at: number } | undefined;

  constructor(
    private readonly repository: SaleRepository,
    private readonly catalog: SaleCatalog,
    private readonly events: SaleEvents,
    private readonly logger: Logger,
  ) {}

  /**
   * Creates a sale: Postgres first (the id's owner), then Redis. A create that finds the id taken
   * finishes loading it into Redis if an earlier create was cut short (no anchor yet), and still
   * answers SALE_EXISTS. A sale cut short never took an order nor a close (both need the anchor):
   * one without an anchor that has either (loaded under layout 1, or its Redis state lost) is
   * left alone, since loading it from its definition would reopen it with its initial stock.
   */
  async create(sale: SaleDefinition): Promise<SaleView | 'SALE_EXISTS'> {
    if (!(await this.repository.insert(sale))) {
      const stored = await this.definition(sale.id, true);
      if (stored && stored.closedAt === null && !(await this.repository.hasOrders(sale.id)) && (await this.catalog.load(stored))) {
        this.logger.warn({ event: 'sale_load_finished', saleId: sale.id }, 'finished loading a sale cut short');
      }
      return 'SALE_EXISTS';
    }
    await this.catalog.load(sale);
    this.live = undefined;
    this.unknown.delete(sale.id);
    this.events.onSaleKnown(sale);
    this.logger.info({ event: 'sale_created', saleId: sale.id, items: sale.items.length }, 'sale created');
    const view = await this.view(sale.id, Date.now(), { fresh: true });
    if (!view) throw new Error(`sale ${sale.id} vanished right after it was created`);
    return view;
  }

  /** Static sale data from Postgres, kept in memory (it changes only by restock or close). */
  private async definition(saleId: string, fresh = false, now = Date.now()): Promise<StoredSale | undefined> {
    const cached = this.definitions.get(saleId);
    if (cached && !fresh) return cached;
    if (!fresh && (this.unknown.get(saleId) ?? 0) > now) return undefined;
    const stored = await this.repository.find(saleId);
    if (stored) {
      this.definitions.set(saleId, stored);
      this.unknown.delete(saleId);
    } else {
      if (this.unknown.size > 10_000) this.unknown.clear();
      this.unknown.set(saleId, now + VIEW_TTL_MS);
    }
    return stored;
  }

  async view(saleId: string, now = Date.now(), options: { fresh?: boolean } = {}): Promise<SaleView | undefined> {
    const cached = this.views.get(saleId);
    if (cached && cached.until > now && !options.fresh) return cached.view;
    const sale = await this.definition(saleId, options.fresh);
    if (!sale) return undefined;
    const state = await this.catalog.state(saleId, sale.items.map((item) => item.sku));
    if (!state) return undefined;
    const items = sale.items.flatMap((item): ItemView[] => {
      const stock = state.items.get(item.sku);
      if (!stock) return [];
      return [
        {
          sku: item.sku,
          name: item.name,
          unitPrice: item.unitPrice,
          perUserLimit: item.perUserLimit,
          available: Math.max(0, stock.available),
          state: itemState(stock),
          stock,
          initialStock: item.stock,
        },
      ];
    });
    const view: SaleView = { sale, status: saleStatus(sale, state.closedAt, now), closedAt: state.closedAt, items };
    this.views.set(saleId, { view, until: now + VIEW_TTL_MS });
    return view;
  }

  async list(now = Date.now()) {
    const sales = await this.repository.list();
    return sales.map((sale) => ({ ...sale, status: saleStatus(sale, sale.closedAt, now) }));
  }

  async close(saleId: string): Promise<SaleView | CloseError> {
    let closed: Awaited<ReturnType<SaleCatalog['close']>>;
    try {
      closed = await this.catalog.close(saleId);
    } catch (error) {
      if (!(error instanceof CloseIncompleteError)) throw error;
      this.logger.error({ event: 'sale_close_incomplete', saleId, err: error }, 'sale closed on its anchor, but a shard could not be reached');
      return 'CLOSE_INCOMPLETE';
    }
    if (!closed.ok) return 'SALE_NOT_FOUND';
    await this.repository.markClosed(saleId, closed.closedAt);
    this.logger.info({ event: 'sale_closed', saleId }, 'sale closed by an operator');
    return (await this.view(saleId, Date.now(), { fresh: true })) ?? 'SALE_NOT_FOUND';
  }

  private async item(saleId: string, sku: string): Promise<SaleActionError | undefined> {
    const sale = await this.definition(saleId);
    if (!sale) return 'SALE_NOT_FOUND';
    return sale.items.some((item) => item.sku === sku) ? undefined : 'ITEM_NOT_FOUND';
  }

  async delist(saleId: string, sku: string): Promise<ItemView | SaleActionError> {
    const missing = await this.item(saleId, sku);
    if (missing) return missing;
    const result = await this.catalog.delist(saleId, sku);
    if (!result.ok) return result.code;
    await this.repository.recordListing(saleId, sku, 'delisted', Date.now());
    this.events.onDelisted(saleId, sku, 'operator');
    this.logger.info({ event: 'item_delisted', saleId, sku, reason: 'operator' }, 'item delisted by an operator');
    return this.itemView(saleId, sku);
  }

  async relist(saleId: string, sku: string): Promise<ItemView | SaleActionError> {
    const missing = await this.item(saleId, sku);
    if (missing) return missing;
    const result = await this.catalog.relist(saleId, sku);
    if (!result.ok) return result.code;
    await this.repository.recordListing(saleId, sku, 'relisted', Date.now());
    this.logger.info({ event: 'item_relisted', saleId, sku }, 'item relisted by an operator');
    return this.itemView(saleId, sku);
  }

  async restock(saleId: string, sku: string, quantity: number): Promise<ItemView | RestockError> {
    const missing = await this.item(saleId, sku);
    if (missing) return missing;
    // Postgres first: should Redis fail now, the guard there is merely looser than the truth.
    // Postgres also holds the stock limits, so a refused restock never reaches Redis.
    const recorded = await this.repository.addRestock(saleId, sku, quantity);
    if (recorded === 'STOCK_LIMIT_EXCEEDED') return recorded;
    if (!recorded) return 'ITEM_NOT_FOUND';
    const result = await this.catalog.restock(saleId, sku, quantity);
    if (!result.ok) return result.code;
    this.logger.info({ event: 'item_restocked', saleId, sku, quantity, relisted: result.relisted }, 'item restocked');
    return this.itemView(saleId, sku);
  }

  private async itemView(saleId: string, sku: string): Promise<ItemView | SaleActionError> {
    const view = await this.view(saleId, Date.now(), { fresh: true });
    return view?.items.find((item) => item.sku === sku) ?? 'ITEM_NOT_FOUND';
  }

  /**
   * Sales that may still have orders only in Redis or still pending — ended (or closed) less than
   * their payment window plus a day ago — cached for a second.
   */
  async liveSaleIds(options: { fresh?: boolean } = {}, now = Date.now()): Promise<readonly string[]> {
    if (this.live && this.live.until > now && (!options.fresh || now - this.live.at < LIVE_REFRESH_MIN_MS)) return this.live.ids;
    const sales = await this.repository.list();
    const ids = sales.filter((sale) => (sale.closedAt ?? sale.endsAt) + sale.paymentWindowSeconds * 1000 + LIVE_MARGIN_MS > now).map((sale) => sale.id);
    this.live = { ids, until: now + VIEW_TTL_MS, at: now };
    return ids;
  }

  /** Every stock shard of every item of the live sales: what the expiry sweeper works through. */
  async liveShards(): Promise<ShardRef[]> {
    const sales = await Promise.all((await this.liveSaleIds()).map((saleId) => this.definition(saleId)));
    return sales.flatMap((sale) => (sale ? shardRefsOf(sale) : []));
  }

  /**
   * The units left (Σ available + in transfer + held: the item's total) of every item of the live sales, as Redis holds them now: read at scrape
   * time for flashsale_stock_available. The reads go out together (auto-pipelined: one round trip).
   */
  async stockLevels(): Promise<{ saleId: string; sku: string; available: number }[]> {
    const saleIds = await this.liveSaleIds({ fresh: true });
    const states = await Promise.all(
      saleIds.map(async (saleId) => {
        const sale = await this.definition(saleId);
        const state = sale && (await this.catalog.state(saleId, sale.items.map((item) => item.sku)));
        return [...(state?.items ?? new Map<string, ItemStock>())].map(([sku, stock]) => ({ saleId, sku, available: stock.available }));
      }),
    );
    return states.flat();
  }

  /** Every sale Postgres knows, announced so that its metric series exist from start-up. */
  async announceKnownSales(): Promise<void> {
    for (const summary of await this.repository.list()) {
      const sale = await this.definition(summary.id);
      if (sale) this.events.onSaleKnown(sale);
    }
  }
}
