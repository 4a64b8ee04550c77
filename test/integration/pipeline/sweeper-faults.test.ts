// The expiry sweeper when one sale's keys are bad: like the persister, it goes on with the sales
// after it (a failed sale is logged and tried again next round) and sweeps the bad one once repaired.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { ExpirySweeper } from '../../../src/orders/expiry-sweeper.ts';
import type { LifecycleEvents } from '../../../src/orders/lifecycle.ts';
import { saleKeys } from '../../../src/stock/keys.ts';
import type { TestContext } from '../../support/context.ts';
import { luaFixture, saleItem as item } from '../../support/lua-fixtures.ts';

const NOW = Math.floor(Date.now() / 1000) * 1000;
const lua = luaFixture({ now: NOW, salePrefix: 'sweepfault', postgres: true });
const { newSaleId, loadSale, available } = lua;

let ctx: TestContext;
let prefix: string;
let redis: Redis;

beforeAll(async () => {
  ({ ctx, prefix, redis } = await lua.open());
});

afterAll(() => lua.close());

it('when one sale’s deadlines key is of the wrong type, then the sales after it are still swept, and it is again once repaired', async () => {
  const [bad, good] = [newSaleId('bad'), newSaleId('good')];
  for (const saleId of [bad, good]) await loadSale(saleId, [item({ stock: 10, perUserLimit: 1 })]);
  const expired: string[] = [];
  const events: LifecycleEvents = { onReleased: ({ orderIds }) => void expired.push(...orderIds), onPaid: () => undefined, onReopened: async () => undefined };
  const live = async () => [bad, good];
  const sweeper = new ExpirySweeper(redis, lua.lifecycleOn(redis, events, live), prefix, live, createLogger(ctx.config));

  const goodOrder = await lua.place(good, 'u-1');
  const badDeadlines = saleKeys(prefix, bad).deadlines;
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
