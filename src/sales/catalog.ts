// The sale's live state in Redis: loading a sale, closing it, and the operator's item switches
// (delist, relist, restock), each one Lua script; plus reading the state for views and reports.
import type { RedisClient } from '../redis/connection.ts';
import { saleKeys, stockEventsChannel } from '../stock/keys.ts';
import { UnexpectedScriptReply } from '../stock/reserve-outcome.ts';
import { script, type ScriptCommands } from '../stock/scripts.ts';
import type { DelistReason, ItemStock, SaleDefinition } from './sale.ts';

export type SwitchResult = { readonly ok: true; readonly available?: number; readonly relisted?: boolean } | { readonly ok: false; readonly code: 'ITEM_NOT_FOUND' | 'SALE_NOT_FOUND' };

function replyArray(name: string, reply: unknown): unknown[] {
  if (!Array.isArray(reply) || typeof reply[0] !== 'string') throw new UnexpectedScriptReply(name, reply);
  return reply as unknown[];
}

function optionalMs(value: string | undefined): number | null {
  return value ? Number(value) : null;
}

export class SaleCatalog {
  constructor(
    private readonly redis: RedisClient,
    private readonly scripts: ScriptCommands,
    private readonly prefix: string,
  ) {}

  /** Loads a sale into Redis atomically; false when it was already there. */
  async load(sale: SaleDefinition, now = Date.now()): Promise<boolean> {
    const keys = saleKeys(this.prefix, sale.id);
    const saleJson = JSON.stringify({ startsAt: sale.startsAt, endsAt: sale.endsAt, paymentWindowMs: sale.paymentWindowSeconds * 1000 });
    const itemJson = sale.items.map((item) =>
      JSON.stringify({
        sku: item.sku,
        stock: item.stock,
        unitPrice: item.unitPrice,
        perUserLimit: item.perUserLimit,
        lowUnits: item.lowStock && 'units' in item.lowStock ? item.lowStock.units : undefined,
        lowPct: item.lowStock && 'percent' in item.lowStock ? item.lowStock.percent : undefined,
      }),
    );
    const itemKeys = sale.items.map((item) => keys.item(item.sku));
    const reply = replyArray(
      'loadSale',
      await script(this.scripts, 'loadSale')(1 + itemKeys.length, keys.sale, ...itemKeys, saleJson, now, ...itemJson),
    );
    if (reply[0] === 'OK') return true;
    if (reply[0] === 'SALE_EXISTS') return false;
    throw new UnexpectedScriptReply('loadSale', reply);
  }

  async close(saleId: string, now = Date.now()): Promise<{ ok: true; closedAt: number } | { ok: false }> {
    const reply = replyArray('closeSale', await script(this.scripts, 'closeSale')(saleKeys(this.prefix, saleId).sale, now));
    return reply[0] === 'OK' ? { ok: true, closedAt: Number(reply[1]) } : { ok: false };
  }

  async delist(saleId: string, sku: string, now = Date.now()): Promise<SwitchResult> {
    const reply = replyArray('delistItem', await script(this.scripts, 'delistItem')(saleKeys(this.prefix, saleId).item(sku), now));
    return reply[0] === 'OK' ? { ok: true } : { ok: false, code: 'ITEM_NOT_FOUND' };
  }

  async relist(saleId: string, sku: string): Promise<SwitchResult> {
    const reply = replyArray('relistItem', await script(this.scripts, 'relistItem')(saleKeys(this.prefix, saleId).item(sku)));
    if (reply[0] !== 'OK') return { ok: false, code: 'ITEM_NOT_FOUND' };
    await this.announceReopened(saleId, sku);
    return { ok: true, available: Number(reply[1]), relisted: true };
  }

  async restock(saleId: string, sku: string, quantity: number): Promise<SwitchResult> {
    const reply = replyArray('restockItem', await script(this.scripts, 'restockItem')(saleKeys(this.prefix, saleId).item(sku), quantity));
    if (reply[0] !== 'OK') return { ok: false, code: 'ITEM_NOT_FOUND' };
    await this.announceReopened(saleId, sku);
    return { ok: true, available: Number(reply[1]), relisted: reply[2] === 1 };
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
        soldOutAt: optionalMs(hash.soldOutAt),
        delistedAt: optionalMs(hash.delistedAt),
      });
    });
    return { closedAt: optionalMs(sale.closedAt), items: stock };
  }
}
