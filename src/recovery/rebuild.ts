// Rebuilds a sale's Redis state (layout2.md) from Postgres, the system of record, when Redis lost
// it (a restart without its data, a FLUSHDB, a master lost with no replica) or still holds it in
// layout 1 (the one-time migration of sales live across the layout-2 deploy).
//
// Safe when processes race: a rebuild runs under a Postgres advisory lock per (namespace, sale)
// and looks at Redis again once it holds it, so the second of two racing rebuilds finds the sale
// whole and writes nothing. Each lost shard is written by one script (its keys share a slot) whose
// last command creates the shard's `sale` hash, and the anchor is written after every shard: a
// reserve finds either nothing (SALE_NOT_FOUND, answered 503 SALE_RECOVERING) or the whole shard.
//
// Consistency with the persister: the rebuild holds FOR SHARE on the sale's items while it reads
// and writes, so a batch being written to Postgres as it starts is counted (it waits for that
// commit), and one written after it waits for the rebuild to finish. Orders still waiting in a
// surviving outbox are overlaid on Postgres's (plan.ts effectiveLiveOrders). What Redis lost before
// it reached Postgres cannot come back: docs/design.md "Recovery" bounds it per durability setting.
import type { Logger } from '../logger.ts';
import type { Pool } from '../db/pool.ts';
import type { Order } from '../orders/order.ts';
import { OUTBOX_GROUP } from '../orders/outbox-persister.ts';
import { latestPerOrder, parseStreamEntries, type RawStreamEntries } from '../orders/outbox.ts';
import { orderFromRow, type OrderRow } from '../orders/repository.ts';
import type { RedisClient } from '../redis/connection.ts';
import type { SaleRepository } from '../sales/repository.ts';
import { stockShardsOf } from '../sales/sale.ts';
import { anchorKey, encodeKeyPart, shardKeys, stockEventsChannel, tagHex, userOrdersKey, type ShardRef } from '../stock/keys.ts';
import { effectiveLiveOrders, planAnchor, planItem, shardOfOrder, type RecordedSale, type ShardPlan } from './plan.ts';
import { damage, inspectSale, survivingShard, type SaleInRedis } from './redis-state.ts';
import { writeShard } from './write-shard.ts';

/** A pool or one of its clients (inside the rebuild's transaction). */
export type Queryable = Pick<Pool, 'query'>;

/** The shopper index's lifetime (layout2.md: 48 h, refreshed on each add). */
const USER_ORDERS_TTL_MS = 48 * 60 * 60 * 1000;

export type RebuildOutcome =
  | {
      readonly kind: 'rebuilt';
      /** Shards written (every shard of the sale after a full loss). */
      readonly shards: number;
      readonly anchor: boolean;
      readonly liveOrders: number;
      readonly pendingOrders: number;
      /** Layout 1 → 2: the sale was migrated. */
      readonly migrated: boolean;
      readonly ms: number;
    }
  /** Nothing was missing (another process rebuilt it first, or it never was lost). */
  | { readonly kind: 'intact' }
  /** Postgres has no such sale. */
  | { readonly kind: 'unknown' };

export interface RebuildOptions {
  readonly now?: number;
  /** Rewrites every shard from the record even if present (reconcile --fix). */
  readonly force?: boolean;
}

/** Layout-1 names of a migrated sale, frozen here: read once to move unpersisted entries, then deleted. */
function layout1Keys(prefix: string, saleId: string, skus: readonly string[]): { outbox: string; others: string[] } {
  const base = `${prefix}:{${encodeKeyPart(saleId)}}`;
  return {
    outbox: `${base}:outbox`,
    others: [`${base}:deadlines`, ...skus.flatMap((sku) => [`${base}:item:${encodeKeyPart(sku)}`, `${base}:users:${encodeKeyPart(sku)}`])],
  };
}

// KEYS[1] the anchor, then a migrated sale's layout-1 keys; ARGV[1] '1' to overwrite a layout-2
// anchor (reconcile --fix), then the anchor's fields and values.
const WRITE_ANCHOR = `
if ARGV[1] ~= '1' and redis.call('HGET', KEYS[1], 'layout') == '2' then
  return 0
end
redis.call('DEL', unpack(KEYS))
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
`;

/** The advisory lock a rebuild of the sale holds (pg_advisory_xact_lock(hashtextextended(name, 0))). */
export function rebuildLockName(prefix: string, saleId: string): string {
  return `flashsale:rebuild:${prefix}:${saleId}`;
}

function shardId(ref: ShardRef): string {
  return `${ref.sku}\u0000${ref.shard}`;
}

export class SaleRebuilder {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly pool: Pool,
    private readonly repository: SaleRepository,
    private readonly logger: Logger,
  ) {}

  /** The sale as Postgres records it, in the shape the plan takes; undefined when unknown. */
  async recorded(saleId: string): Promise<RecordedSale | undefined> {
    const [stored, listings] = await Promise.all([this.repository.find(saleId), this.repository.listings(saleId)]);
    if (!stored) return undefined;
    return {
      id: stored.id,
      startsAt: stored.startsAt,
      endsAt: stored.endsAt,
      paymentWindowMs: stored.paymentWindowSeconds * 1000,
      closedAt: stored.closedAt,
      items: stored.items.map((item) => ({
        sku: item.sku,
        unitPrice: item.unitPrice,
        perUserLimit: item.perUserLimit,
        total: item.stock + item.restocked,
        lowStock: item.lowStock,
        shards: stockShardsOf(item),
        listing: listings.get(item.sku),
      })),
    };
  }

  async rebuild(saleId: string, options: RebuildOptions = {}): Promise<RebuildOutcome> {
    const started = Date.now();
    const now = options.now ?? started;
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // Never hold a connection waiting for ever (another rebuild stuck, a persister's batch held
      // up): give up, and the next check tries again.
      await client.query(`SET LOCAL lock_timeout = '10s'`);
      // One rebuilder per (namespace, sale) at a time, across every process.
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [rebuildLockName(this.prefix, saleId)]);
      // Order batches of this sale being written now are committed before we read; later ones wait for us.
      await client.query('SELECT 1 FROM sale_items WHERE sale_id = $1 FOR SHARE', [saleId]);
      const sale = await this.recorded(saleId);
      if (!sale) {
        await client.query('COMMIT');
        return { kind: 'unknown' };
      }
      const state = await inspectSale(this.redis, this.prefix, sale);
      const found = damage(state);
      const allShards = state.shards.map((shard) => shard.ref);
      const lost = options.force ? allShards : found.shards;
      const writeAnchor = options.force || found.anchor;
      if (!writeAnchor && lost.length === 0) {
        await client.query('COMMIT');
        return { kind: 'intact' };
      }
      // A forced rebuild (reconcile --fix) fences the sale first: with no shard `sale` hash, reserves
      // are refused (503 SALE_RECOVERING) while the record is read and the shards rewritten.
      if (options.force) await Promise.all(allShards.map((ref) => this.redis.del(shardKeys(this.prefix, ref.saleId, ref.sku, ref.shard).sale)));
      const migrated = state.anchor !== undefined && !state.layout2;
      const legacy = migrated ? layout1Keys(this.prefix, saleId, sale.items.map((item) => item.sku)) : undefined;
      const legacyOutbox = legacy ? await this.readOutbox(saleId, legacy.outbox) : [];

      const live = await this.liveOrders(client, saleId, allShards, legacyOutbox);
      const accepted = await this.acceptedPerShard(client, sale);
      const closedAt = this.closedAt(state, sale.closedAt);

      const lostIds = new Set(lost.map(shardId));
      const plans = sale.items.flatMap((item) => {
        const survivors = new Map(
          state.shards.filter((shard) => shard.ref.sku === item.sku && !lostIds.has(shardId(shard.ref))).map((shard) => [shard.ref.shard, survivingShard(shard.item)]),
        );
        const lostHere = lost.filter((ref) => ref.sku === item.sku).map((ref) => ref.shard);
        if (lostHere.length === 0) return [];
        return planItem({
          sale,
          item,
          lost: lostHere,
          survivors,
          live: live.filter((order) => order.sku === item.sku),
          accepted: accepted.get(item.sku) ?? new Map(),
          closedAt,
          now,
        });
      });
      // A migrated sale's unpersisted entries move to their shard's outbox, where the persister reads now.
      const moved = new Map<string, Order[]>();
      for (const order of legacyOutbox) {
        const item = sale.items.find((candidate) => candidate.sku === order.sku);
        if (!item) continue;
        const id = shardId({ saleId, sku: order.sku, shard: shardOfOrder(order, item.shards), shards: item.shards });
        moved.set(id, [...(moved.get(id) ?? []), order]);
      }
      // Each write looks again, atomically, and leaves a shard or anchor it finds whole alone: the
      // read above may have been stale (a Cluster master restarted empty, answering for a moment).
      const written: ShardPlan[] = [];
      for (const plan of plans) if (await this.writeShard(plan, moved.get(shardId(plan.ref)) ?? [])) written.push(plan);
      const anchorWritten = writeAnchor && (await this.writeAnchor(saleId, planAnchor(sale, closedAt), legacy ? [legacy.outbox, ...legacy.others] : [], options.force === true));
      await client.query('COMMIT');
      if (written.length === 0 && !anchorWritten) return { kind: 'intact' };
      const foundWhole = plans.length - written.length;
      if (foundWhole > 0) this.logger.warn({ saleId, foundWhole }, 'shards read as missing were whole when rebuilt (a stale read): left as they were');
      // The sale serves again from here: that is the time its storefront was refused for.
      const ms = Date.now() - started;
      // The shoppers' index is no part of the sale's state (idempotent, best effort): written after.
      await this.writeShopperIndex(written.flatMap((plan) => plan.live)).catch((err: unknown) =>
        this.logger.warn({ err, saleId }, 'could not restore the shoppers\' order index of a rebuilt sale; their lists fall back to Postgres'),
      );
      // Sold-out marks API processes took while the sale was missing (or before) are forgotten.
      await Promise.all(sale.items.map((item) => this.redis.publish(stockEventsChannel(this.prefix), JSON.stringify({ saleId, sku: item.sku }))));
      return {
        kind: 'rebuilt',
        shards: written.length,
        anchor: anchorWritten,
        liveOrders: written.reduce((sum, plan) => sum + plan.live.length, 0),
        pendingOrders: written.reduce((sum, plan) => sum + plan.pending.length, 0),
        migrated,
        ms,
      };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  /**
   * The sale's live orders now: Postgres's, overlaid with every order still waiting in a shard's
   * outbox (the lost shards' hold nothing) — decided by Redis, not yet in Postgres.
   */
  async liveOrders(client: Queryable, saleId: string, shards: readonly ShardRef[], extra: readonly Order[] = []): Promise<Order[]> {
    const { rows } = await client.query<OrderRow>(`SELECT * FROM orders WHERE sale_id = $1 AND status IN ('pending_payment', 'paid')`, [saleId]);
    const postgresLive = rows.map(orderFromRow);
    const outboxes = await Promise.all(shards.map((ref) => this.readOutbox(saleId, shardKeys(this.prefix, ref.saleId, ref.sku, ref.shard).outbox)));
    const waiting = latestPerOrder([...outboxes.flat(), ...extra].map((order, index) => ({ streamId: String(index), order })));
    const persistedFinal = await this.persistedFinal(client, waiting, new Set(postgresLive.map((order) => order.id)));
    return effectiveLiveOrders(postgresLive, waiting, persistedFinal);
  }

  /** The first close wins everywhere: the anchor's, else a surviving shard's, else Postgres's. */
  private closedAt(state: SaleInRedis, recorded: number | null): number | null {
    const candidates = [state.anchor?.closedAt, ...state.shards.map((shard) => shard.sale.closedAt)];
    const known = candidates.find((value) => value !== undefined && value !== '');
    return known === undefined ? recorded : Number(known);
  }

  private async readOutbox(saleId: string, stream: string): Promise<Order[]> {
    const raw = (await this.redis.xrange(stream, '-', '+')) as RawStreamEntries;
    return parseStreamEntries(saleId, raw).entries.map((entry) => entry.order);
  }

  /** Outbox orders Postgres already holds in a final status (no entry revives them). */
  private async persistedFinal(client: Queryable, waiting: readonly Order[], live: ReadonlySet<string>): Promise<Set<string>> {
    const ids = waiting.filter((order) => !live.has(order.id)).map((order) => order.id);
    if (ids.length === 0) return new Set();
    const { rows } = await client.query<{ id: string }>('SELECT id::text FROM orders WHERE id = ANY($1::uuid[])', [ids]);
    return new Set(rows.map((row) => row.id));
  }

  /** Orders ever accepted per item and shard (by the tag their id carries; older ids count on their home shard's item at K = 1). */
  private async acceptedPerShard(client: Queryable, sale: RecordedSale): Promise<Map<string, Map<number, number>>> {
    const { rows } = await client.query<{ sku: string; tag: string; n: string }>(
      'SELECT sku, right(id::text, 8) AS tag, count(*) AS n FROM orders WHERE sale_id = $1 GROUP BY 1, 2',
      [sale.id],
    );
    const counts = new Map<string, Map<number, number>>();
    for (const item of sale.items) {
      const byShard = new Map<number, number>();
      const tags = new Map(Array.from({ length: item.shards }, (_, k) => [tagHex(shardKeys(this.prefix, sale.id, item.sku, k).tag), k]));
      for (const row of rows.filter((candidate) => candidate.sku === item.sku)) {
        const k = tags.get(row.tag) ?? 0;
        byShard.set(k, (byShard.get(k) ?? 0) + Number(row.n));
      }
      counts.set(item.sku, byShard);
    }
    return counts;
  }

  /** One script per shard (writeShard), then the outbox's consumer group; false when the shard was found whole. */
  private async writeShard(plan: ShardPlan, moved: readonly Order[]): Promise<boolean> {
    const { ref } = plan;
    if (!(await writeShard(this.redis, this.prefix, plan, moved))) return false;
    // The persister reads each shard's outbox through its group; it makes it when missing, and so do we.
    await this.redis.xgroup('CREATE', shardKeys(this.prefix, ref.saleId, ref.sku, ref.shard).outbox, OUTBOX_GROUP, '0', 'MKSTREAM').catch((error: unknown) => {
      if (!String((error as Error).message).includes('BUSYGROUP')) throw error;
    });
    return true;
  }

  /** The shoppers' index of recent orders (each in the shopper's own slot), so GET /v1/users/me/orders still lists them. */
  private async writeShopperIndex(orders: readonly Order[]): Promise<void> {
    const byUser = new Map<string, (string | number)[]>();
    for (const order of orders) byUser.set(order.userId, [...(byUser.get(order.userId) ?? []), order.createdAt, order.id]);
    await Promise.all(
      [...byUser].map(async ([userId, members]) => {
        const key = userOrdersKey(this.prefix, userId);
        await this.redis.zadd(key, ...members);
        await this.redis.pexpire(key, USER_ORDERS_TTL_MS);
      }),
    );
  }

  /**
   * The anchor, last: from now on the sale counts as loaded. A migrated sale's layout-1 keys go with
   * it (same slot). A layout-2 anchor found there is left alone unless forced (see writeShard).
   */
  private async writeAnchor(saleId: string, anchor: Record<string, string | number>, legacy: readonly string[], force: boolean): Promise<boolean> {
    const key = anchorKey(this.prefix, saleId);
    const fields = Object.entries(anchor).flatMap(([field, value]) => [field, String(value)]);
    return (await this.redis.eval(WRITE_ANCHOR, 1 + legacy.length, key, ...legacy, force ? '1' : '0', ...fields)) === 1;
  }
}
