// redis-restart: Redis (AOF on, as in compose) is SIGKILLed mid-rush and restarted from its AOF.
// Under appendfsync always an order is in the AOF, fsynced, before its 201 leaves, so no
// acknowledged order may be missing: every 201 still one Postgres row, Redis stock consistent.
// The same run measures what `always` costs: the same saturating rush for a few seconds under each
// policy (CONFIG SET appendfsync on the live server) before the fault, 201s per second compared.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createSale } from '../../../test/integration/faults/harness.ts';
import { finish, PER_USER_LIMIT, runDrill, SKUS, STOCK_PER_SKU, startDrillStack, startRush, type Drill, type DrillOptions, type DrillStack, type Scenario } from '../drill.ts';
import { Rush } from '../rush.ts';

const COST_WINDOW_MS = 3_000;

export const redisRestart: Scenario = {
  name: 'redis-restart',
  summary: 'SIGKILL Redis (AOF on, appendfsync always by default) mid-rush and restart it from its AOF; no 201 lost',
  run: (options: DrillOptions) =>
    runDrill('redis-restart', options, async (drill) => {
      const fsync = options.appendfsync ?? 'always';
      drill.fault = `Redis (appendonly yes, appendfsync ${fsync}) was SIGKILLed mid-rush, then restarted from its AOF`;
      drill.recoveryMeaning = 'from the SIGKILL to the first new 201 after the restart';
      const s = await startDrillStack(drill, { redisArgs: ['--appendonly', 'yes', '--appendfsync', fsync] });
      await measureFsyncCost(drill, s, fsync);

      const rush = startRush(drill, s, { concurrency: 16 });
      await rush.waitForAccepted(300, 30_000);
      // What a machine crash (not a process kill) could take under everysec: about the last second.
      const lastSecond = rush.attempts.filter((a) => a.label === '201' && a.atMs > drill.now() - 1_000).length;
      rush.phase = 'redis down';
      const killedAt = drill.event(`SIGKILL redis-server pid ${s.stack.redis.pid} (${rush.ledger.accepted.size} orders accepted so far)`);
      await s.stack.redis.kill('SIGKILL');
      await s.stack.redis.restart();
      drill.event(`redis-server started again (pid ${s.stack.redis.pid}), AOF loaded`);
      rush.phase = 'after';
      const firstAfter = await rush.waitForAcceptedIn('after', 30_000);
      drill.recoveryMs = firstAfter === undefined ? null : firstAfter - killedAt;
      drill.figures['201s in the second before the kill (at risk under everysec if the machine, not the process, had crashed)'] = lastSecond;
      await rush.waitForAccepted(rush.ledger.accepted.size + 200, 20_000);
      await finish(drill, s);
    }),
};

/**
 * The same saturating rush for COST_WINDOW_MS under everysec, then under always, on a sale of its
 * own (the drill's sale is judged against its own rush's 201s); the policy under test is restored.
 */
async function measureFsyncCost(drill: Drill, s: DrillStack, restore: string): Promise<void> {
  const admin = new Redis(s.stack.redisUrl, { maxRetriesPerRequest: 1 });
  const saleId = await createSale(s.api.baseUrl, s.stack.secret, SKUS.map((sku) => ({ sku, stock: STOCK_PER_SKU, perUserLimit: PER_USER_LIMIT })));
  try {
    const rate: Record<string, number> = {};
    for (const policy of ['everysec', 'always'] as const) {
      await admin.config('SET', 'appendfsync', policy);
      const rush = new Rush(() => s.api.baseUrl, saleId, s.stack.secret, () => drill.now(), { skus: SKUS, concurrency: 32, pauseMs: 0, greedyEvery: 0 });
      rush.start();
      await sleep(COST_WINDOW_MS);
      await rush.stop();
      rate[policy] = Math.round(rush.ledger.accepted.size / (COST_WINDOW_MS / 1000));
    }
    await admin.config('SET', 'appendfsync', restore);
    drill.figures['201/s under appendfsync everysec (32 lanes, 3 s)'] = rate['everysec'] ?? 0;
    drill.figures['201/s under appendfsync always (32 lanes, 3 s)'] = rate['always'] ?? 0;
    drill.figures['cost of always vs everysec (%)'] = Math.round(100 * (1 - (rate['always'] ?? 0) / Math.max(1, rate['everysec'] ?? 0)));
    drill.event(`fsync cost measured: everysec ${rate['everysec']} 201/s, always ${rate['always']} 201/s`);
  } finally {
    admin.disconnect();
  }
}
