// Reading what Redis still holds of a sale (layout2.md): its anchor and every shard's `sale` and
// `item` hashes. A sale is lost when the anchor is missing or still of layout 1, or when any
// shard's `sale` or `item` hash is missing: the anchor is written last when a sale is loaded or
// rebuilt, so with it present every shard must be too.
import type { RedisClient } from '../redis/connection.ts';
import { anchorKey, shardKeys, type ShardRef } from '../stock/keys.ts';
import type { SurvivingShard } from './plan.ts';

/** A sale's items and their K: all the inspection needs. */
export interface SaleShape {
  readonly id: string;
  readonly items: readonly { readonly sku: string; readonly shards: number }[];
}

export interface ShardState {
  readonly ref: ShardRef;
  /** Both the shard's `sale` and `item` hashes exist. */
  readonly present: boolean;
  readonly sale: Record<string, string>;
  readonly item: Record<string, string>;
}

export interface SaleInRedis {
  /** The anchor hash; undefined when it is missing. */
  readonly anchor: Record<string, string> | undefined;
  /** The anchor says layout 2 (a layout-1 sale's hash has the same name and no `layout` field). */
  readonly layout2: boolean;
  readonly shards: readonly ShardState[];
}

function shardRefs(sale: SaleShape): ShardRef[] {
  return sale.items.flatMap((item) => Array.from({ length: item.shards }, (_, shard) => ({ saleId: sale.id, sku: item.sku, shard, shards: item.shards })));
}

function present(hash: Record<string, string> | undefined): hash is Record<string, string> {
  return hash !== undefined && Object.keys(hash).length > 0;
}

/** One parallel read (auto-pipelined, one round trip per node) of the anchor and every shard. */
export async function inspectSale(redis: RedisClient, prefix: string, sale: SaleShape): Promise<SaleInRedis> {
  const refs = shardRefs(sale);
  const [anchor, ...hashes] = await Promise.all([
    redis.hgetall(anchorKey(prefix, sale.id)),
    ...refs.flatMap((ref) => {
      const keys = shardKeys(prefix, ref.saleId, ref.sku, ref.shard);
      return [redis.hgetall(keys.sale), redis.hgetall(keys.item)];
    }),
  ]);
  const shards = refs.map((ref, index): ShardState => {
    const saleHash = hashes[2 * index];
    const itemHash = hashes[2 * index + 1];
    return { ref, present: present(saleHash) && present(itemHash), sale: saleHash ?? {}, item: itemHash ?? {} };
  });
  return { anchor: present(anchor) ? anchor : undefined, layout2: anchor?.layout === '2', shards };
}

/** What must be rebuilt: the shards missing, and whether the anchor is. */
export function damage(state: SaleInRedis): { readonly anchor: boolean; readonly shards: readonly ShardRef[] } {
  return { anchor: !state.layout2, shards: state.shards.filter((shard) => !shard.present).map((shard) => shard.ref) };
}

export function isLost(state: SaleInRedis): boolean {
  const { anchor, shards } = damage(state);
  return anchor || shards.length > 0;
}

export function survivingShard(item: Record<string, string>): SurvivingShard {
  return {
    available: Number(item.available ?? 0),
    outPending: Number(item.outPending ?? 0),
    held: Number(item.held ?? 0),
    delisted: item.delisted ?? '',
    delistedAt: item.delistedAt ?? '',
  };
}
