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

const COST_WINDOW_MS = 2_000;
const REDIS_WINDOW_MS = 1_500;

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
      const lastSecond = rush.attempts.filter((a) => a.label === '201' && a.answeredMs > drill.now() - 1_000).length;
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
 * What `always` costs against `everysec`, measured twice on the drill's own Redis (CONFIG SET
 * appendfsync on the live server; the policy under test is restored after):
 * - through the service: the same saturating rush (32 lanes, no pause) for COST_WINDOW_MS under each
 *   policy, alternated twice after a warm-up, on a sale of its own (the drill's sale is judged
 *   against its own rush's 201s); on a busy machine the service's CPU, not the disk, may bound it;
 * - Redis alone: 32 clients writing (HINCRBY, appended to the AOF) back to back, REDIS_WINDOW_MS each.
 */
async function measureFsyncCost(drill: Drill, s: DrillStack, restore: string): Promise<void> {
  const admin = new Redis(s.stack.redisUrl, { maxRetriesPerRequest: 1 });
  const saleId = await createSale(s.api.baseUrl, s.stack.secret, SKUS.map((sku) => ({ sku, stock: STOCK_PER_SKU, perUserLimit: PER_USER_LIMIT })));
  const serviceRush = async (ms: number): Promise<number> => {
    const rush = new Rush(() => s.api.baseUrl, saleId, s.stack.secret, () => drill.now(), { skus: SKUS, concurrency: 32, pauseMs: 0, greedyEvery: 0 });
    const started = performance.now();
    rush.start();
    await sleep(ms);
    await rush.stop();
    return rush.ledger.accepted.size / ((performance.now() - started) / 1000);
  };
  try {
    const service: Record<string, number[]> = { everysec: [], always: [] };
    const redis: Record<string, number> = {};
    await serviceRush(1_000); // warm-up: JIT, connections, script cache
    for (const policy of ['everysec', 'always', 'everysec', 'always'] as const) {
      await admin.config('SET', 'appendfsync', policy);
      service[policy]!.push(await serviceRush(COST_WINDOW_MS));
    }
    for (const policy of ['everysec', 'always'] as const) {
      await admin.config('SET', 'appendfsync', policy);
      redis[policy] = await redisWrites(s.stack.redisUrl, REDIS_WINDOW_MS);
    }
    await admin.config('SET', 'appendfsync', restore);
    const best = (policy: string) => Math.round(Math.max(...(service[policy] ?? [0])));
    const cost = (always: number, everysec: number) => Math.round(100 * (1 - always / Math.max(1, everysec)));
    drill.figures['service 201/s, appendfsync everysec (32 lanes, best of 2)'] = best('everysec');
    drill.figures['service 201/s, appendfsync always (32 lanes, best of 2)'] = best('always');
    drill.figures['service: throughput lost to always (%)'] = cost(best('always'), best('everysec'));
    drill.figures['Redis alone writes/s, everysec (32 clients)'] = Math.round(redis['everysec'] ?? 0);
    drill.figures['Redis alone writes/s, always (32 clients)'] = Math.round(redis['always'] ?? 0);
    drill.figures['Redis alone: throughput lost to always (%)'] = cost(redis['always'] ?? 0, redis['everysec'] ?? 0);
    drill.event(`fsync cost measured: service everysec ${best('everysec')} / always ${best('always')} 201/s; Redis alone everysec ${Math.round(redis['everysec'] ?? 0)} / always ${Math.round(redis['always'] ?? 0)} writes/s`);
  } finally {
    admin.disconnect();
  }
}

/** Writes per second of 32 clients each doing HINCRBY back to back for `ms`. */
async function redisWrites(url: string, ms: number): Promise<number> {
  const clients = Array.from({ length: 32 }, () => new Redis(url, { maxRetriesPerRequest: 1 }));
  try {
    const until = performance.now() + ms;
    const started = performance.now();
    const counts = await Promise.all(
      clients.map(async (client, i) => {
        let n = 0;
        while (performance.now() < until) {
          await client.hincrby('drill:fsync-cost', String(i), 1);
          n++;
        }
        return n;
      }),
    );
    return counts.reduce((a, b) => a + b, 0) / ((performance.now() - started) / 1000);
  } finally {
    for (const client of clients) client.disconnect();
  }
}
