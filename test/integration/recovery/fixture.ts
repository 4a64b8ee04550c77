// Recovery tests' fixture: a sale and its orders written straight into Postgres (the system of
// record a rebuild reads), order ids minted on the shard a real reserve would use, and direct
// reads of the layout-2 keys a rebuild writes.
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import pg from 'pg';
import { createLogger } from '../../../src/logger.ts';
import type { Order, OrderStatus } from '../../../src/orders/order.ts';
import { OrderWriter } from '../../../src/orders/order-writer.ts';
import { SaleRebuilder } from '../../../src/recovery/rebuild.ts';
import { SaleRepository } from '../../../src/sales/repository.ts';
import type { SaleDefinition, SaleItemDefinition } from '../../../src/sales/sale.ts';
import { homeShard, shardKeys, shardTag } from '../../../src/stock/keys.ts';
import { mintOrderId } from '../../../src/stock/order-id.ts';
import { scanKeys } from '../../../tools/redis-keys.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';

let counter = 0;

export function saleDefinition(items: readonly Partial<SaleItemDefinition>[], overrides: Partial<SaleDefinition> = {}): SaleDefinition {
  const now = Date.now();
  return {
    id: `rb-${process.pid}-${++counter}`,
    name: 'Recovery drill',
    startsAt: now - 60_000,
    endsAt: now + 3_600_000,
    currency: 'CNY',
    paymentWindowSeconds: 900,
    items: items.map((item, index) => ({ sku: `sku-${index}`, name: `Item ${index}`, unitPrice: 1000, stock: 10, perUserLimit: 3, ...item })),
    ...overrides,
  };
}

export interface OrderInput {
  readonly sku: string;
  readonly userId: string;
  readonly quantity: number;
  readonly status?: OrderStatus;
  readonly idempotencyKey?: string;
  readonly createdAt?: number;
  readonly expiresAt?: number;
}

/** An order as the reserve would have made it (id on the shopper's home shard), in its given status. */
export function order(sale: SaleDefinition, input: OrderInput): Order {
  const item = sale.items.find((candidate) => candidate.sku === input.sku)!;
  const K = item.stockShards ?? 1;
  const createdAt = input.createdAt ?? Date.now() - 1_000;
  const status = input.status ?? 'pending_payment';
  return {
    id: mintOrderId(shardTag(sale.id, input.sku, homeShard(input.userId, K))),
    saleId: sale.id,
    sku: input.sku,
    userId: input.userId,
    quantity: input.quantity,
    unitPrice: item.unitPrice,
    amount: item.unitPrice * input.quantity,
    status,
    idempotencyKey: input.idempotencyKey ?? null,
    createdAt,
    expiresAt: input.expiresAt ?? createdAt + sale.paymentWindowSeconds * 1000,
    ...(status === 'paid' && { paidAt: createdAt + 500, paymentRef: `pay-${input.userId}` }),
    ...(status === 'cancelled' && { cancelledAt: createdAt + 500 }),
    ...(status === 'expired' && { expiredAt: createdAt + 500 }),
  };
}

export interface RecoveryFixture {
  readonly pool: pg.Pool;
  readonly repository: SaleRepository;
  readonly rebuilder: SaleRebuilder;
  /** Records the sale and its orders in Postgres; returns the orders. */
  record(sale: SaleDefinition, orders?: readonly OrderInput[]): Promise<Order[]>;
  close(): Promise<void>;
}

export function recoveryFixture(ctx: TestContext, redis: Redis): RecoveryFixture {
  const pool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 4 });
  const repository = new SaleRepository(pool);
  const writer = new OrderWriter(pool);
  return {
    pool,
    repository,
    rebuilder: new SaleRebuilder(redis, ctx.prefix, pool, repository, createLogger({ logLevel: 'silent' })),
    async record(sale, orders = []) {
      if (!(await repository.insert(sale))) throw new Error(`sale ${sale.id} exists`);
      const made = orders.map((input) => order(sale, input));
      if (made.length > 0) await writer.write(sale.id, made);
      return made;
    },
    close: () => pool.end(),
  };
}

/** The layout-2 keys of one shard, and reads of what a rebuild wrote there. */
export function shardOf(redis: Redis, prefix: string, saleId: string, sku: string, shard = 0) {
  const keys = shardKeys(prefix, saleId, sku, shard);
  return {
    keys,
    item: () => redis.hgetall(keys.item),
    sale: () => redis.hgetall(keys.sale),
    users: () => redis.hgetall(keys.users),
    deadlines: () => redis.zrange(keys.deadlines, 0, -1),
  };
}

export interface RecoveryTestEnv {
  readonly ctx: TestContext;
  readonly redis: Redis;
  readonly fx: RecoveryFixture;
}

/** A test file's own context (database, key namespace), a Redis connection and the fixture: opened before its tests, closed after. */
export function useRecoveryFixture(): RecoveryTestEnv {
  const env = {} as { ctx: TestContext; redis: Redis; fx: RecoveryFixture };
  beforeAll(async () => {
    env.ctx = await createTestContext();
    env.redis = new Redis(env.ctx.redisUrl);
    env.fx = recoveryFixture(env.ctx, env.redis);
  });
  afterAll(async () => {
    await env.fx.close();
    env.redis.disconnect();
    await env.ctx.cleanup();
  });
  return env;
}

/**
 * Takes every key of the namespace away, as a master restarted empty would show it: DUMPs them,
 * then UNLINKs them; the function returned puts them back exactly (values and TTLs), as the
 * promoted replica still holds them.
 */
export async function takeAwayKeys(redis: Redis, prefix: string): Promise<() => Promise<void>> {
  const keys = await scanKeys(redis, `${prefix}:*`);
  const dumps = await Promise.all(keys.map(async (key) => ({ key, dump: await redis.dumpBuffer(key), ttl: await redis.pttl(key) })));
  await redis.unlink(...keys);
  return async () => {
    for (const { key, dump, ttl } of dumps) await redis.restore(key, ttl > 0 ? ttl : 0, dump);
  };
}
