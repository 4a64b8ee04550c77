// The expiry sweeper when one shard's keys are bad: like the persister, it goes on with the shards
// after it (a failed shard is logged and tried again next round) and sweeps the bad one once repaired.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { ExpirySweeper } from '../../../src/orders/expiry-sweeper.ts';
import type { LifecycleEvents } from '../../../src/orders/lifecycle.ts';
import { shardRefsOf, type SaleDefinition } from '../../../src/sales/sale.ts';
import type { TestContext } from '../../support/context.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const lua = luaFixture({ now: NOW, salePrefix: 'sweepfault', postgres: true });
const { newSaleId } = lua;
const { loadSale, available } = lua;

let ctx: TestContext;
let prefix: string;
let redis: Redis;

beforeAll(async () => {
  ({ ctx, prefix, redis } = await lua.open());
});

afterAll(() => lua.close());

it('when one shard’s deadlines key is of the wrong type, then the shards after it are still swept, and it is again once repaired', async () => {
  const [bad, good] = [newSaleId('bad'), newSaleId('good')];
  const sales: SaleDefinition[] = [];
  for (const saleId of [bad, good]) sales.push(await loadSale(saleId, [item({ stock: 10, perUserLimit: 1 })]));
  const expired: string[] = [];
  const events: LifecycleEvents = { onReleased: ({ orderIds }) => void expired.push(...orderIds), onPaid: () => undefined, onReopened: async () => undefined };
  const live = async () => sales.flatMap((sale) => shardRefsOf(sale));
  const sweeper = new ExpirySweeper(redis, lua.lifecycleOn(redis, events), prefix, live, createLogger(ctx.config));

  const goodOrder = await lua.place(good, 'u-1');
  const badDeadlines = lua.shardKeys(bad).deadlines;
  await redis.set(badDeadlines, 'not a sorted set');
  expect(await sweeper.runOnce(goodOrder.expiresAt)).toBe(1);
  expect(expired).toEqual([goodOrder.id]);
  expect(await available(good)).toBe(10);

  await redis.del(badDeadlines);
  const badOrder = await lua.place(bad, 'u-2');
  expect(await sweeper.runOnce(badOrder.expiresAt)).toBe(1);
  expect(expired).toEqual([goodOrder.id, badOrder.id]);
  expect(await available(bad)).toBe(10);
});
