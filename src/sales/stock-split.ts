// How an item's stock is laid over its K stock shards when the sale is loaded (layout 2).
// K = 1: the whole stock on shard 0 with the low-stock rule as given, decided inside the scripts
// (available/total, on crossing). K > 1: the level's units are `held` on shard 0 (never sold nor
// transferred) and the rest R is spread evenly: shard k gets floor(R/K) + (k < R mod K ? 1 : 0),
// so Σ available is exactly the stock above the level.
import type { ShardStock } from '../stock/scripts/load-sale.ts';
import { stockShardsOf, type LowStockRule, type SaleItemDefinition } from './sale.ts';

/** The units of `stock` the low-stock level holds back on K > 1: floor(pct·stock/100), or min(units, stock). */
export function heldUnits(stock: number, rule: LowStockRule | undefined): number {
  if (!rule) return 0;
  return 'units' in rule ? Math.min(rule.units, stock) : Math.floor((rule.percent * stock) / 100);
}

/** The same rule as lua/includes/lowStock.lua, for the state an item is loaded in (K = 1). */
function atOrBelowLevel(units: number, total: number, rule: LowStockRule | undefined): boolean {
  if (!rule) return false;
  return 'units' in rule ? units <= rule.units : units * 100 <= rule.percent * total;
}

/** What loadShard writes on each shard of the item, shard 0 first. */
export function shardStocks(item: SaleItemDefinition): ShardStock[] {
  const shards = stockShardsOf(item);
  const rule = item.lowStock;
  const lowUnits = rule && 'units' in rule ? rule.units : undefined;
  const lowPct = rule && 'percent' in rule ? rule.percent : undefined;
  const common = { sku: item.sku, shards, unitPrice: item.unitPrice, perUserLimit: item.perUserLimit, soldOut: item.stock === 0 };
  if (shards === 1) {
    const delisted = atOrBelowLevel(item.stock, item.stock, rule) ? 'low_stock' : '';
    return [{ ...common, shard: 0, available: item.stock, total: item.stock, lowUnits, lowPct, delisted }];
  }
  const held = heldUnits(item.stock, rule);
  const rest = item.stock - held;
  // Nothing above the level: the item starts delisted by the rule, as K = 1 does.
  const delisted = held > 0 && rest === 0 ? 'low_stock' : '';
  return Array.from({ length: shards }, (_, shard) => {
    const available = Math.floor(rest / shards) + (shard < rest % shards ? 1 : 0);
    const zero = shard === 0 ? { total: item.stock, lowUnits, lowPct, held } : {};
    return { ...common, ...zero, shard, available, delisted };
  });
}
