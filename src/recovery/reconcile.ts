// Compares each item's Redis state with what Postgres (overlaid with the orders still waiting in
// the outboxes) says it must be: stock (Σ available + outPending + held against initial + restocks
// − live), live quantity (Σ of the users hashes against the live orders) and every shopper's count
// on their home shard. `npm run reconcile` prints it; with --fix a drifted sale is rebuilt.
// The reads are not one snapshot: on a sale taking orders a drift may be an order in flight, so
// a drift is worth a second run before a fix (docs/design.md "Recovery").
import type { Pool } from '../db/pool.ts';
import type { RedisClient } from '../redis/connection.ts';
import { homeShard, shardKeys } from '../stock/keys.ts';
import type { SaleRebuilder } from './rebuild.ts';
import { damage, inspectSale } from './redis-state.ts';

export interface ItemDrift {
  readonly saleId: string;
  readonly sku: string;
  /** Units Redis can still sell (and holds back) vs initial + restocks − live. */
  readonly stock: { readonly redis: number; readonly expected: number };
  /** Units held by live orders: Σ users hashes vs Σ live orders. */
  readonly live: { readonly redis: number; readonly expected: number };
  /** Shoppers whose count on their home shard differs from their live orders. */
  readonly usersDrifted: number;
  /** Shards (of K) missing in Redis. */
  readonly shardsMissing: number;
  readonly drift: boolean;
}

export interface SaleReconciliation {
  readonly saleId: string;
  /** The anchor is missing or not layout 2. */
  readonly anchorMissing: boolean;
  readonly items: readonly ItemDrift[];
  readonly drift: boolean;
}

export async function reconcileSale(redis: RedisClient, prefix: string, pool: Pool, rebuilder: SaleRebuilder, saleId: string): Promise<SaleReconciliation | undefined> {
  const sale = await rebuilder.recorded(saleId);
  if (!sale) return undefined;
  const state = await inspectSale(redis, prefix, sale);
  const refs = state.shards.map((shard) => shard.ref);
  const [live, users] = await Promise.all([
    rebuilder.liveOrders(pool, saleId, refs),
    Promise.all(refs.map((ref) => redis.hgetall(shardKeys(prefix, ref.saleId, ref.sku, ref.shard).users))),
  ]);
  const missing = damage(state);
  const items = sale.items.map((item): ItemDrift => {
    const mine = live.filter((order) => order.sku === item.sku);
    const expectedLive = mine.reduce((sum, order) => sum + order.quantity, 0);
    const expectedUsers = new Map<string, number>();
    for (const order of mine) expectedUsers.set(order.userId, (expectedUsers.get(order.userId) ?? 0) + order.quantity);
    let redisStock = 0;
    let redisLive = 0;
    let usersDrifted = 0;
    state.shards.forEach((shard, index) => {
      if (shard.ref.sku !== item.sku) return;
      redisStock += Number(shard.item.available ?? 0) + Number(shard.item.outPending ?? 0) + Number(shard.item.held ?? 0);
      const counts = users[index] ?? {};
      for (const [userId, quantity] of Object.entries(counts)) {
        redisLive += Number(quantity);
        if (Number(quantity) !== (homeShard(userId, item.shards) === shard.ref.shard ? (expectedUsers.get(userId) ?? 0) : 0)) usersDrifted++;
      }
      for (const [userId, quantity] of expectedUsers) {
        if (homeShard(userId, item.shards) === shard.ref.shard && counts[userId] === undefined && quantity > 0) usersDrifted++;
      }
    });
    const stock = { redis: redisStock, expected: Math.max(0, item.total - expectedLive) };
    const shardsMissing = missing.shards.filter((ref) => ref.sku === item.sku).length;
    return {
      saleId,
      sku: item.sku,
      stock,
      live: { redis: redisLive, expected: expectedLive },
      usersDrifted,
      shardsMissing,
      drift: stock.redis !== stock.expected || redisLive !== expectedLive || usersDrifted > 0 || shardsMissing > 0,
    };
  });
  return { saleId, anchorMissing: missing.anchor, items, drift: missing.anchor || items.some((item) => item.drift) };
}

/** The drift as a table, one row per item. */
export function driftTable(sales: readonly SaleReconciliation[]): string {
  const header = ['sale', 'sku', 'stock redis', 'stock expected', 'live redis', 'live expected', 'users drifted', 'shards missing', 'drift'];
  const rows = sales.flatMap((sale) =>
    sale.items.map((item) => [
      sale.saleId,
      item.sku,
      String(item.stock.redis),
      String(item.stock.expected),
      String(item.live.redis),
      String(item.live.expected),
      String(item.usersDrifted),
      String(item.shardsMissing),
      item.drift || sale.anchorMissing ? (sale.anchorMissing ? 'DRIFT (anchor missing)' : 'DRIFT') : 'ok',
    ]),
  );
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}
