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
import { orderKeyOf, shardKeys, stockEventsChannel, type ShardKeys } from '../../src/stock/keys.ts';
import type { SaleDefinition, SaleItemDefinition } from '../../src/sales/sale.ts';
import { Reservations, type Reservation, type ReserveRequest } from '../../src/orders/reservations.ts';
import { payOrder, type PayOrderReply } from '../../src/stock/scripts/pay-order.ts';
import { expireDue, type ExpireDueReply } from '../../src/stock/scripts/expire-due.ts';
import { defineScripts, type Scripts } from '../../src/stock/scripts/registry.ts';
import { releaseOrder, type ReleaseOrderReply } from '../../src/stock/scripts/release-order.ts';
import { StockTransfers } from '../../src/stock/transfers.ts';
import { createTestContext, type TestContext } from './context.ts';
import { saleState, shardZeroKeys } from './sale-state.ts';

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
    /** Every key of one stock shard (shard 0 of phone-x unless told): order(id), sweepLease, transfers… */
    shardKeys: (saleId: string, sku = SKU, shard = 0): ShardKeys => shardKeys(the().prefix, saleId, sku, shard),

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

    /** Places an order at `now` (or `at`) through the reserve, on the shopper's home shard; it must be accepted. */
    async place(saleId: string, userId = 'u-1', quantity = 1, sku = SKU, at = now): Promise<LiveOrder> {
      const result = await reservationsOn(the().redis).reserve({ saleId, sku, userId, quantity }, at);
      if (result.kind !== 'accepted') throw new Error(`expected an accepted order, got ${JSON.stringify(result)}`);
      // The record the reserve wrote, which also names the shard that made the order.
      const order = liveOrderFromHash(await the().redis.hgetall(orderKeyOf(the().prefix, result.order.id) ?? ''));
      if (!order) throw new Error(`order ${result.order.id} has no layout-2 record`);
      return order;
    },

    scriptsFor,

    /** Delists an item (phone-x unless told) at `now` the way production does: an operator's delist, or the low-stock rule's on every shard. */
    async delist(saleId: string, reason: 'operator' | 'low_stock', sku = SKU): Promise<void> {
      const { catalog } = the();
      if (reason === 'operator') {
        expect(await catalog.delist(saleId, sku, now)).toEqual({ ok: true });
        return;
      }
      const item = (await state.itemsOf(saleId)).find((candidate) => candidate.sku === sku);
      if (!item) throw new Error(`no item ${sku} in sale ${saleId}`);
      await catalog.delistLowStock(saleId, sku, item.shards, now);
    },

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

/** The shard an order's record names (layout 2), read from the record its id points at. */
async function shardOfRecord({ redis, prefix }: { redis: Redis; prefix: string }, orderId: string): Promise<number> {
  const key = orderKeyOf(prefix, orderId);
  const shard = key === undefined ? null : await redis.hget(key, 'shard');
  if (shard === null) throw new Error(`order ${orderId} has no layout-2 record naming its shard`);
  return Number(shard);
}
