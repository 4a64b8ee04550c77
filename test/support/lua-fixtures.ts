// Fixtures for the tests that drive the Lua scripts against real Redis: this file's namespace,
// a connection with the scripts defined (bindings are called through it), a SaleCatalog, optional extra connections and Postgres,
// and the arrange steps they share. Create one per file at module scope; open() it in beforeAll
// (then read ctx, redis, scripts, catalog … off the fixture itself, or off what open() returns).
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { expect } from 'vitest';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { OrderLifecycle, type LifecycleEvents } from '../../src/orders/lifecycle.ts';
import { liveOrderFromHash, type LiveOrder, type Order } from '../../src/orders/order.ts';
import { OrderStore } from '../../src/orders/order-store.ts';
import { OrderRepository } from '../../src/orders/repository.ts';
import { SaleCatalog } from '../../src/sales/catalog.ts';
import { anchorKey, encodeKeyPart, homeShard, orderKeyOf, shardKeys, stockEventsChannel, userOrdersKey, type ShardKeys, type ShardRef } from '../../src/stock/keys.ts';
import { mintOrderId } from '../../src/stock/order-id.ts';
import { shardRefsOf, stockShardsOf, type SaleDefinition, type SaleItemDefinition } from '../../src/sales/sale.ts';
import { Reservations, type Reservation, type ReserveRequest } from '../../src/orders/reservations.ts';
import { payOrder, type PayOrderReply } from '../../src/stock/scripts/pay-order.ts';
import { expireDue, type ExpireDueReply } from '../../src/stock/scripts/expire-due.ts';
import { defineScripts, type Scripts } from '../../src/stock/scripts/registry.ts';
import { releaseOrder, type ReleaseOrderReply } from '../../src/stock/scripts/release-order.ts';
import { StockTransfers } from '../../src/stock/transfers.ts';
import { createTestContext, type TestContext } from './context.ts';
import { saleState, shardZeroKeys } from './sale-state.ts';
import { scanKeys as scanRedisKeys } from '../../tools/redis-keys.ts';

/** The item most script tests sell. */
const SKU = 'phone-x';

/** An item of a sale definition: 10 units of phone-x at 1,999.00, at most 5 per user. */
export function saleItem(overrides: Partial<SaleItemDefinition> = {}): SaleItemDefinition {
  return { sku: SKU, name: 'Phone X', unitPrice: 199_900, stock: 10, perUserLimit: 5, ...overrides };
}

/** A sale open around `now`: started a minute before, ends an hour after, 900 s to pay. */
export function saleDefinition(id: string, items: SaleItemDefinition[], now: number, overrides: Partial<SaleDefinition> = {}): SaleDefinition {
  return { id, name: 'Double 11', startsAt: now - 60_000, endsAt: now + 3_600_000, currency: 'CNY', paymentWindowSeconds: 900, items, ...overrides };
}

export type Accepted = Extract<Reservation, { kind: 'accepted' }>;
export const acceptedOf = (results: readonly Reservation[]) => results.filter((r): r is Accepted => r.kind === 'accepted');
export const refusalCodes = (results: readonly Reservation[]) => new Set(results.flatMap((r) => (r.kind === 'refused' ? [r.code] : [])));

/** One single-unit request of phone-x from each of n users, `${tag}-0` to `${tag}-(n-1)`. */
export const shoppers = (saleId: string, n: number, tag = 'u'): ReserveRequest[] =>
  Array.from({ length: n }, (_, i) => ({ saleId, sku: SKU, userId: `${tag}-${i}`, quantity: 1 }));

export interface LuaFixtureOptions {
  /** The tests' clock: sales are loaded open around it, orders placed and rushes fired at it. */
  readonly now: number;
  /** Sale ids are `${salePrefix}-${label}-${n}`. */
  readonly salePrefix: string;
  /** How many extra connections `pool` holds, for races. */
  readonly connections?: number;
  /** A Postgres pool on this file's database, which lifecycleOn() needs. */
  readonly postgres?: boolean;
}

export interface OpenLua {
  readonly ctx: TestContext;
  readonly prefix: string;
  readonly redis: Redis;
  /** The scripts on `redis`, for calling bindings directly. */
  readonly scripts: Scripts;
  readonly catalog: SaleCatalog;
  readonly pg: Pool | undefined;
}

/** An order as the order scripts need it; without `shard`, the shard its record names is read. */
type OrderRef = Pick<Order, 'id' | 'saleId' | 'sku'> & { readonly shard?: number };

export function luaFixture(options: LuaFixtureOptions) {
  const { now } = options;
  const pool: Redis[] = [];
  let opened: OpenLua | undefined;
  let saleCounter = 0;

  const the = (): OpenLua => {
    if (!opened) throw new Error('the Lua fixture is not open: call open() in beforeAll');
    return opened;
  };
  const state = saleState(the);
  /** The scripts on `client` (the main connection by default), in this file's namespace. */
  const scriptsFor = (client?: Redis): Scripts => (client === undefined || client === the().redis ? the().scripts : defineScripts(client, the().prefix));
  /** A Reservations of its own (its own in-process memory) on `client`, able to move stock between an item's shards. */
  const reservationsOn = (client: Redis): Reservations => {
    const scripts = scriptsFor(client);
    const catalog = client === the().redis ? the().catalog : new SaleCatalog(scripts);
    const sharded = { transfers: new StockTransfers(scripts), delistLowStock: catalog.delistLowStock.bind(catalog) };
    return new Reservations(scripts, { sharded });
  };
  /** One Reservations per pooled connection, each with its own in-process memory. */
  const lanes = (): Reservations[] => pool.map((client) => reservationsOn(client));
  const orderKeys = async (order: OrderRef) => ({ saleId: order.saleId, orderId: order.id, sku: order.sku, shard: order.shard ?? (await shardOfRecord(the(), order.id)) });

  return {
    /** Extra connections (empty until open()), for racing over several connections. */
    pool: pool as readonly Redis[],

    // The open fixture's parts, read when a test runs (they throw before open()).
    get ctx(): TestContext {
      return the().ctx;
    },
    get prefix(): string {
      return the().prefix;
    },
    get redis(): Redis {
      return the().redis;
    },
    get scripts(): Scripts {
      return the().scripts;
    },
    get catalog(): SaleCatalog {
      return the().catalog;
    },
    /** The keys of shard 0 (of K) of an item (phone-x unless told) of a sale, in this file's namespace. */
    keys: (saleId: string, sku = SKU, shard = 0) => shardZeroKeys(the().prefix, saleId, sku, shard),

    /** What the stock-events channel announced while `act` ran, parsed, in order. */
    async announced(act: () => Promise<unknown>): Promise<unknown[]> {
      const { ctx, prefix, redis } = the();
      const channel = stockEventsChannel(prefix);
      const end = `end-${randomUUID()}`;
      const subscriber = new Redis(ctx.redisUrl);
      try {
        const messages: string[] = [];
        const ended = new Promise<void>((resolve) =>
          subscriber.on('message', (_channel: string, message: string) => (message === end ? resolve() : messages.push(message))),
        );
        await subscriber.subscribe(channel);
        await act();
        // Published after everything `act` did: once it arrives, every announcement of `act` has (one channel keeps its order).
        await redis.publish(channel, end);
        await ended;
        return messages.map((message) => JSON.parse(message) as unknown);
      } finally {
        await subscriber.quit();
      }
    },

    async open(): Promise<OpenLua> {
      const ctx = await createTestContext();
      const prefix = ctx.config.redis.prefix;
      const redis = new Redis(ctx.redisUrl);
      const scripts = defineScripts(redis, prefix);
      const pg = options.postgres ? createPool({ databaseUrl: ctx.databaseUrl }) : undefined;
      opened = { ctx, prefix, redis, scripts, catalog: new SaleCatalog(scripts), pg };
      for (let i = 0; i < (options.connections ?? 0); i++) pool.push(new Redis(ctx.redisUrl));
      return opened;
    },

    async close(): Promise<void> {
      const closing = opened;
      opened = undefined;
      await Promise.all([closing?.redis, ...pool.splice(0)].map((client) => client?.quit()));
      await closing?.pg?.end();
      await closing?.ctx.cleanup();
    },

    newSaleId: (label: string) => `${options.salePrefix}-${label}-${++saleCounter}`,

    /** Loads a sale open around `now` (see saleDefinition) and checks that it was new. */
    async loadSale(id: string, items: SaleItemDefinition[] = [saleItem()], overrides: Partial<SaleDefinition> = {}): Promise<SaleDefinition> {
      const sale = saleDefinition(id, items, now, overrides);
      expect(await the().catalog.load(sale, now - 120_000)).toBe(true);
      return sale;
    },

    /** A Reservations with fresh in-process memory on the main connection. */
    fresh: (): Reservations => reservationsOn(the().redis),
    lanes,

    /** Fires every request at once, request i on pooled connection i mod n, at time now + i. */
    async rush(requests: readonly ReserveRequest[]): Promise<Reservation[]> {
      const all = lanes();
      return Promise.all(
        requests.map((request, i) => {
          const lane = all[i % all.length];
          if (!lane) throw new Error('no lane');
          return lane.reserve(request, now + i);
        }),
      );
    },

    /** Places an order at `now` that must be accepted, and returns it. */
    async place(saleId: string, userId = 'u-1', quantity = 1, sku = SKU): Promise<Order> {
      const result = await reservationsOn(the().redis).reserve({ saleId, sku, userId, quantity }, now);
      if (result.kind !== 'accepted') throw new Error(`expected an accepted order, got ${JSON.stringify(result)}`);
      return result.order;
    },

    scriptsFor,

    /** payOrder's binding called directly, on `client` (the main connection by default). */
    pay: async (order: OrderRef, userId: string, paymentRef: string, at: number, client?: Redis): Promise<PayOrderReply> =>
      payOrder(scriptsFor(client), await orderKeys(order), { userId, paymentRef, now: at }),

    /** releaseOrder's binding (a cancel) called directly, on `client` (the main connection by default). */
    release: async (order: OrderRef, userId: string, at: number, client?: Redis): Promise<ReleaseOrderReply> =>
      releaseOrder(scriptsFor(client), await orderKeys(order), { userId, now: at }),

    /** expireDue's binding (the sweeper's batch) called directly on the shard of the first order, on `client` (the main connection by default). */
    async expire(orders: readonly OrderRef[], at: number, client?: Redis): Promise<ExpireDueReply> {
      const first = orders[0];
      const shard = first ? await orderKeys(first) : { saleId: '', sku: '', shard: 0 };
      return expireDue(scriptsFor(client), shard, orders.map((order) => order.id), at);
    },

    /** An OrderLifecycle on `client` whose store reads Redis by order id, then Postgres. */
    lifecycleOn(client: Redis, events: LifecycleEvents): OrderLifecycle {
      const { prefix, pg } = the();
      if (!pg) throw new Error('lifecycleOn needs the fixture opened with postgres: true');
      return new OrderLifecycle(scriptsFor(client), new OrderStore(client, prefix, new OrderRepository(pg)), events);
    },

    ...state,
    /** An item's available units (phone-x unless told). */
    available: (saleId: string, sku = SKU) => state.available(saleId, sku),
    /** Every user's live quantity of an item (phone-x unless told). */
    liveQuantities: (saleId: string, sku = SKU) => state.liveQuantities(saleId, sku),
  };
}

// ---- Layout 2 (appended by helper "orders") -------------------------------------------------

/** The shard an order's record names (layout 2), read from the record its id points at. */
async function shardOfRecord({ redis, prefix }: { redis: Redis; prefix: string }, orderId: string): Promise<number> {
  const key = orderKeyOf(prefix, orderId);
  const shard = key === undefined ? null : await redis.hget(key, 'shard');
  if (shard === null) throw new Error(`order ${orderId} has no layout-2 record naming its shard`);
  return Number(shard);
}

/**
 * Writes a sale in key layout 2 as layout2.md pins it: every shard's `sale` and `item` hashes
 * (stock split evenly over K = stockShards, no low-stock level), then the anchor last. A stand-in
 * for the layout-2 loader so the order scripts, lookups and sweeper are tested on layout 2 before
 * it lands; the real loader must write at least these fields.
 */
export async function seedLayout2Sale(redis: Redis, prefix: string, sale: SaleDefinition): Promise<ShardRef[]> {
  const paymentWindowMs = sale.paymentWindowSeconds * 1000;
  const anchor: Record<string, string | number> = { startsAt: sale.startsAt, endsAt: sale.endsAt, paymentWindowMs, closedAt: '', layout: '2' };
  const refs = shardRefsOf(sale);
  for (const ref of refs) {
    const item = sale.items.find((candidate) => candidate.sku === ref.sku);
    if (!item) throw new Error(`no item ${ref.sku}`);
    const keys = shardKeys(prefix, ref.saleId, ref.sku, ref.shard);
    const units = Math.floor(item.stock / ref.shards) + (ref.shard < item.stock % ref.shards ? 1 : 0);
    await redis.hset(keys.sale, { startsAt: sale.startsAt, endsAt: sale.endsAt, paymentWindowMs, closedAt: '', ordersAccepted: 0 });
    await redis.hset(keys.item, {
      sku: ref.sku, shard: ref.shard, shards: ref.shards, available: units, unitPrice: item.unitPrice, perUserLimit: item.perUserLimit,
      delisted: '', delistedAt: '', soldOutAt: '', ...(ref.shard === 0 && { total: item.stock }),
    });
    anchor[`shards:${encodeKeyPart(item.sku)}`] = stockShardsOf(item);
  }
  await redis.hset(anchorKey(prefix, sale.id), anchor);
  return refs;
}

/** A layout-2 order request: the shopper lands on homeShard(userId, shards). */
export interface Layout2Placement {
  readonly saleId: string;
  readonly sku: string;
  readonly userId: string;
  readonly quantity?: number;
  /** K of the item (1 unless told). */
  readonly shards?: number;
  /** Another shard than the shopper's home (what a record naming its shard must still be honoured for). */
  readonly shard?: number;
  readonly now: number;
}

/**
 * Places an order the way the layout-2 reserve does on the shopper's home shard: its units off the
 * shard's stock and onto the user's live quantity there, the order record (with `shard`, id minted
 * with the shard's tag, TTL a day past its deadline), its deadline, its outbox entry, and the
 * shopper index. No checks: tests arrange only orders the reserve would accept.
 */
export async function seedLayout2Order(redis: Redis, prefix: string, placement: Layout2Placement): Promise<LiveOrder> {
  const { saleId, sku, userId, now } = placement;
  const quantity = placement.quantity ?? 1;
  const shard = placement.shard ?? homeShard(userId, placement.shards ?? 1);
  const keys: ShardKeys = shardKeys(prefix, saleId, sku, shard);
  const [unitPrice, paymentWindowMs] = [await redis.hget(keys.item, 'unitPrice'), await redis.hget(keys.sale, 'paymentWindowMs')];
  if (unitPrice === null || paymentWindowMs === null) throw new Error(`shard ${shard} of ${saleId}/${sku} is not loaded`);
  const id = mintOrderId(keys.tag);
  const expiresAt = now + Number(paymentWindowMs);
  const record = {
    id, saleId, sku, shard: String(shard), userId, quantity: String(quantity), unitPrice, amount: String(Number(unitPrice) * quantity),
    status: 'pending_payment', createdAt: String(now), expiresAt: String(expiresAt), idempotencyKey: '',
  };
  await redis
    .multi()
    .hincrby(keys.item, 'available', -quantity)
    .hincrby(keys.users, userId, quantity)
    .hset(keys.order(id), record)
    .pexpireat(keys.order(id), expiresAt + 86_400_000)
    .zadd(keys.deadlines, expiresAt, id)
    .hincrby(keys.sale, 'ordersAccepted', 1)
    .xadd(keys.outbox, '*', ...Object.entries(record).flat())
    .zadd(userOrdersKey(prefix, userId), now, id)
    .pexpire(userOrdersKey(prefix, userId), 48 * 3_600_000)
    .exec();
  const order = liveOrderFromHash(record);
  if (!order) throw new Error('seeded a malformed order');
  return order;
}

/** Σ available over an item's shards (layout 2). */
export async function layout2Available(redis: Redis, prefix: string, saleId: string, sku: string, shards = 1): Promise<number> {
  let sum = 0;
  for (let k = 0; k < shards; k++) sum += Number((await redis.hget(shardKeys(prefix, saleId, sku, k).item, 'available')) ?? Number.NaN);
  return sum;
}

/** What layout2Orders needs of an open lua fixture. */
interface OpenFixture {
  readonly redis: Redis;
  readonly prefix: string;
}

/**
 * The lua fixture's arrange and read steps on key layout 2, for the order scripts' tests: sales
 * seeded with seedLayout2Sale, orders with seedLayout2Order (on the shopper's home shard), stock
 * and live quantities summed over an item's shards, and a shard's keys.
 */
export function layout2Orders(fixture: OpenFixture, now: number) {
  const shardsOf = async (saleId: string, sku: string): Promise<number> => {
    const { redis, prefix } = fixture;
    const k = await redis.hget(anchorKey(prefix, saleId), `shards:${encodeKeyPart(sku)}`);
    if (k === null) throw new Error(`no item ${sku} in sale ${saleId} (layout 2)`);
    return Number(k);
  };
  return {
    shardsOf,
    /** Loads a sale open around `now` (see saleDefinition) in layout 2. */
    async loadSale(id: string, items: SaleItemDefinition[] = [saleItem()], overrides: Partial<SaleDefinition> = {}): Promise<SaleDefinition> {
      const sale = saleDefinition(id, items, now, overrides);
      await seedLayout2Sale(fixture.redis, fixture.prefix, sale);
      return sale;
    },
    /** Places an order at `now` (or `at`) on the user's home shard. */
    async place(saleId: string, userId = 'u-1', quantity = 1, sku = SKU, at = now): Promise<LiveOrder> {
      return seedLayout2Order(fixture.redis, fixture.prefix, { saleId, sku, userId, quantity, shards: await shardsOf(saleId, sku), now: at });
    },
    /** One shard's keys (shard 0 unless told). */
    keys: (saleId: string, sku = SKU, shard = 0): ShardKeys => shardKeys(fixture.prefix, saleId, sku, shard),
    /** The record key of an order. */
    orderKey: (orderId: string): string => orderKeyOf(fixture.prefix, orderId) ?? '',
    /** Σ available over the item's shards. */
    available: async (saleId: string, sku = SKU): Promise<number> => layout2Available(fixture.redis, fixture.prefix, saleId, sku, await shardsOf(saleId, sku)),
    /** Every user's live quantity of the item, over its shards. */
    async liveQuantities(saleId: string, sku = SKU): Promise<Record<string, string>> {
      const merged: Record<string, string> = {};
      for (let k = 0; k < (await shardsOf(saleId, sku)); k++) Object.assign(merged, await fixture.redis.hgetall(shardKeys(fixture.prefix, saleId, sku, k).users));
      return merged;
    },
    /** Every key in the slots of the sale's shards, with its content: what "writes nothing" is checked against. */
    async snapshot(saleId: string, skus: readonly string[] = [SKU]): Promise<Record<string, unknown>> {
      const { redis, prefix } = fixture;
      const state: Record<string, unknown> = {};
      for (const sku of skus) {
        for (let k = 0; k < (await shardsOf(saleId, sku)); k++) {
          const slot = shardKeys(prefix, saleId, sku, k).sale.split('}')[0] ?? '';
          for (const key of await scanRedisKeys(redis, `${slot}}:*`)) {
            const type = await redis.type(key);
            if (type === 'hash') state[key] = await redis.hgetall(key);
            else if (type === 'zset') state[key] = await redis.zrange(key, 0, -1, 'WITHSCORES');
            else if (type === 'stream') state[key] = await redis.xrange(key, '-', '+');
            else if (type === 'string') state[key] = await redis.get(key);
            else state[key] = type;
          }
        }
      }
      return state;
    },
  };
}
