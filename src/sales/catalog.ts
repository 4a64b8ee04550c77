// The sale's live state in Redis: loading a sale, closing it, and the operator's item switches
// (delist, relist, restock), each one Lua script; plus reading the state for views and reports.
import type { RedisClient } from '../redis/connection.ts';
import { optionalNumber } from '../redis/hash-fields.ts';
import { saleKeys, stockEventsChannel } from '../stock/keys.ts';
import { closeSale } from '../stock/scripts/close-sale.ts';
import { delistItem } from '../stock/scripts/delist-item.ts';
import { loadSale } from '../stock/scripts/load-sale.ts';
import type { Scripts } from '../stock/scripts/registry.ts';
import { relistItem } from '../stock/scripts/relist-item.ts';
import { restockItem } from '../stock/scripts/restock-item.ts';
import type { DelistReason, ItemStock, SaleDefinition } from './sale.ts';

export type SwitchResult = { readonly ok: true; readonly available?: number; readonly relisted?: boolean } | { readonly ok: false; readonly code: 'ITEM_NOT_FOUND' | 'SALE_NOT_FOUND' };

export class SaleCatalog {
  private readonly redis: RedisClient;
  private readonly prefix: string;

  constructor(private readonly scripts: Scripts) {
    this.redis = scripts.client;
    this.prefix = scripts.prefix;
  }

  /** Loads a sale into Redis atomically; false when it was already there. */
  async load(sale: SaleDefinition, now = Date.now()): Promise<boolean> {
    const reply = await loadSale(
      this.scripts,
      { saleId: sale.id },
      {
        sale: { startsAt: sale.startsAt, endsAt: sale.endsAt, paymentWindowMs: sale.paymentWindowSeconds * 1000 },
        items: sale.items.map((item) => ({
          sku: item.sku,
          stock: item.stock,
          unitPrice: item.unitPrice,
          perUserLimit: item.perUserLimit,
          lowUnits: item.lowStock && 'units' in item.lowStock ? item.lowStock.units : undefined,
          lowPct: item.lowStock && 'percent' in item.lowStock ? item.lowStock.percent : undefined,
        })),
        now,
      },
    );
    return reply.code === 'OK';
  }

  async close(saleId: string, now = Date.now()): Promise<{ ok: true; closedAt: number } | { ok: false }> {
    const reply = await closeSale(this.scripts, { saleId }, { now });
    return reply.code === 'OK' ? { ok: true, closedAt: reply.closedAt } : { ok: false };
  }

  async delist(saleId: string, sku: string, now = Date.now()): Promise<SwitchResult> {
    const reply = await delistItem(this.scripts, { saleId, sku }, { now });
    return reply.code === 'OK' ? { ok: true } : { ok: false, code: reply.code };
  }

  async relist(saleId: string, sku: string): Promise<SwitchResult> {
    const reply = await relistItem(this.scripts, { saleId, sku });
    if (reply.code !== 'OK') return { ok: false, code: reply.code };
    await this.announceReopened(saleId, sku);
    return { ok: true, available: reply.available, relisted: true };
  }

  async restock(saleId: string, sku: string, quantity: number): Promise<SwitchResult> {
    const reply = await restockItem(this.scripts, { saleId, sku }, { quantity });
    if (reply.code !== 'OK') return { ok: false, code: reply.code };
    await this.announceReopened(saleId, sku);
    return { ok: true, available: reply.availableAfter, relisted: reply.relisted };
  }

  /** Tells every API process to forget its sold-out mark for this item. */
  async announceReopened(saleId: string, sku: string): Promise<void> {
    await this.redis.publish(stockEventsChannel(this.prefix), JSON.stringify({ saleId, sku }));
  }

  /** The sale's closedAt and every item's stock, in one pipelined read; undefined if not loaded. */
  async state(saleId: string, skus: readonly string[]): Promise<{ closedAt: number | null; items: Map<string, ItemStock> } | undefined> {
    const keys = saleKeys(this.prefix, saleId);
    // Separate commands, not one MULTI: on a cluster they still share the sale's slot.
    const [sale, ...items] = await Promise.all([
      this.redis.hgetall(keys.sale),
      ...skus.map((sku) => this.redis.hgetall(keys.item(sku))),
    ]);
    if (!sale || Object.keys(sale).length === 0) return undefined;
    const stock = new Map<string, ItemStock>();
    skus.forEach((sku, index) => {
      const hash = items[index];
      if (!hash || hash.available === undefined) return;
      stock.set(sku, {
        available: Number(hash.available),
        total: Number(hash.total),
        delisted: (hash.delisted || null) as DelistReason | null,
        soldOutAt: optionalNumber(hash.soldOutAt) ?? null,
        delistedAt: optionalNumber(hash.delistedAt) ?? null,
      });
    });
    return { closedAt: optionalNumber(sale.closedAt) ?? null, items: stock };
  }
}
