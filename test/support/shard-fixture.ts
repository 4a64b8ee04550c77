// Fixtures for the stock-transfer tests: this file's namespace, connections with the scripts
// defined, and item shards written directly (HSET, the fields of layout 2's shard item hash), so
// the transfer scripts are tested without the sale loader. Also the ledger every transfer test
// checks: Σ available + Σ outPending over the item's shards never changes.
import { Redis } from 'ioredis';
import type { RedisClient } from '../../src/redis/connection.ts';
import { shardKeys } from '../../src/stock/keys.ts';
import { defineScripts, type Scripts } from '../../src/stock/scripts/registry.ts';
import { createTestContext, type TestContext } from './context.ts';

export interface Ledger {
  readonly available: number[];
  readonly outPending: number[];
  /** Σ available + Σ outPending: the item's sellable stock, which transfers must conserve. */
  readonly stock: number;
}

export function shardFixture(options: { connections?: number } = {}) {
  let opened: { ctx: TestContext; redis: RedisClient; scripts: Scripts; pool: RedisClient[] } | undefined;
  let saleCounter = 0;
  const the = () => {
    if (!opened) throw new Error('the shard fixture is not open: call open() in beforeAll');
    return opened;
  };
  const keys = (saleId: string, sku: string, shard: number) => shardKeys(the().ctx.prefix, saleId, sku, shard);

  return {
    /** Opens on the shared Redis, or on `redisUrl` (a private server), or on what `connect` makes (a Cluster). */
    async open(target?: string | (() => RedisClient)): Promise<void> {
      const ctx = await createTestContext();
      const connect = typeof target === 'function' ? target : () => new Redis(target ?? ctx.redisUrl);
      const redis = connect();
      const pool = Array.from({ length: options.connections ?? 0 }, () => connect());
      opened = { ctx, redis, scripts: defineScripts(redis, ctx.prefix), pool };
    },
    async close(): Promise<void> {
      if (!opened) return;
      for (const client of [opened.redis, ...opened.pool]) client.disconnect();
      await opened.ctx.cleanup();
    },
    get ctx(): TestContext {
      return the().ctx;
    },
    get redis(): RedisClient {
      return the().redis;
    },
    get scripts(): Scripts {
      return the().scripts;
    },
    /** The scripts on each extra connection. */
    poolScripts: (): Scripts[] => the().pool.map((client) => defineScripts(client, the().ctx.prefix)),
    keys,
    newSaleId: (label: string) => `xfer-${label}-${++saleCounter}`,

    /** An item of available.length shards as the loader leaves it: shard k holds available[k]; shard 0 holds `held`. */
    async seed(saleId: string, sku: string, available: readonly number[], options: { held?: number; delisted?: string } = {}): Promise<void> {
      await Promise.all(
        available.map((units, shard) =>
          the().redis.hset(keys(saleId, sku, shard).item, {
            sku,
            shard,
            shards: available.length,
            available: units,
            outPending: 0,
            delisted: options.delisted ?? '',
            ...(shard === 0 ? { held: options.held ?? 0 } : {}),
          }),
        ),
      );
    },

    async field(saleId: string, sku: string, shard: number, name: string): Promise<string | null> {
      return the().redis.hget(keys(saleId, sku, shard).item, name);
    },

    /** Read straight from the hashes (not through the code under test). */
    async ledger(saleId: string, sku: string, shards: number, on: RedisClient = the().redis): Promise<Ledger> {
      const rows = await Promise.all(Array.from({ length: shards }, (_, k) => on.hmget(keys(saleId, sku, k).item, 'available', 'outPending')));
      const available = rows.map((row) => Number(row[0] ?? 0));
      const outPending = rows.map((row) => Number(row[1] ?? 0));
      const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
      return { available, outPending, stock: sum(available) + sum(outPending) };
    },
  };
}
