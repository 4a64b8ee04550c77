// Included Lua runs in Redis as part of the script that includes it: the joined text is a valid
// script, and the shared low-stock rule gives the same answers wherever it is joined.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LUA_DIR, loadScript } from '../../src/stock/scripts/loader.ts';
import { createTestContext, type TestContext } from '../support/context.ts';

let ctx: TestContext;
let redis: Redis;
let dir: string;

beforeAll(async () => {
  ctx = await createTestContext();
  redis = new Redis(ctx.redisUrl);
  dir = mkdtempSync(path.join(tmpdir(), 'lua-includes-'));
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  redis.disconnect();
  await ctx.cleanup();
});

describe('included Lua', () => {
  it('when a script includes the shared low-stock rule, then Redis runs the rule as the item scripts do', async () => {
    // A probe script of its own includes the real file by its absolute path.
    const probe = path.join(dir, 'probe.lua');
    writeFileSync(probe, `--- @include "${path.join(LUA_DIR, 'includes', 'lowStock')}"\nreturn {atOrBelowLowStock(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])) and 1 or 0}\n`);
    const { lua } = loadScript(probe);
    const rule = async (units: number, total: number, lowUnits: number | '', lowPct: number | '') =>
      ((await redis.eval(lua, 0, units, total, lowUnits, lowPct)) as number[])[0];

    expect(await rule(5, 100, 5, '')).toBe(1);
    expect(await rule(6, 100, 5, '')).toBe(0);
    expect(await rule(10, 100, '', 10)).toBe(1);
    expect(await rule(11, 100, '', 10)).toBe(0);
    expect(await rule(0, 100, '', '')).toBe(0);
  });

  it('when a script includes the shared give-back, then it returns units to stock and the user once and reports a reopening', async () => {
    const nested = path.join(dir, 'nested');
    mkdirSync(nested);
    const probe = path.join(nested, 'probe-2.lua');
    writeFileSync(probe, `--- @include "${path.join(LUA_DIR, 'includes', 'giveBack.lua')}"\nreturn giveBack(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))\n`);
    const { lua, numberOfKeys } = loadScript(probe);
    const item = `${ctx.prefix}:{probe}:item`;
    const users = `${ctx.prefix}:{probe}:users`;
    await redis.hset(item, 'available', 0, 'delisted', '');
    await redis.hset(users, 'u-1', 2);

    expect(numberOfKeys).toBe(2);
    expect(await redis.eval(lua, 2, item, users, 'u-1', 2)).toBe(1);
    expect(await redis.hget(item, 'available')).toBe('2');
    expect(await redis.hgetall(users)).toEqual({});
  });
});
