// redis-restart: Redis (AOF on, as in compose) is SIGKILLed mid-rush and restarted from its AOF.
// Under appendfsync always an order is in the AOF, fsynced, before its 201 leaves, so no
// acknowledged order may be missing: every 201 still one Postgres row, Redis stock consistent.
// The same run measures, before the fault, what `always` costs against `everysec` (measureFsyncCost).
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { createSale } from '../../../test/integration/faults/harness.ts';
import { DRILL_ITEMS, finish, runDrill, SKUS, startDrillStack, startRush, type Drill, type DrillOptions, type DrillStack, type Scenario } from '../drill.ts';
import { resolveBinary } from '../../local-servers.ts';
import { Rush } from '../rush.ts';

const COST_WINDOW_MS = 2_000;
const execFileAsync = promisify(execFile);

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
 * What `always` costs against `everysec`, measured on the drill's own Redis (CONFIG SET appendfsync
 * on the live server; the policy under test is restored after), each pair alternated twice, best kept:
 * - Redis alone, with redis-benchmark (SET, appended to the AOF): one client (every write waits for
 *   its own fsync under `always`) and 32 clients (one fsync covers a whole event-loop round);
 * - through the service: the same saturating rush (32 lanes, no pause) for COST_WINDOW_MS, on a sale
 *   of its own (the drill's sale is judged against its own rush's 201s). On a busy machine the
 *   service's CPU, not the disk, bounds this one; the 1-minute load average is reported with it.
 */
async function measureFsyncCost(drill: Drill, s: DrillStack, restore: string): Promise<void> {
  const admin = new Redis(s.stack.redisUrl, { maxRetriesPerRequest: 1 });
  const saleId = await createSale(s.api.baseUrl, s.stack.secret, [...DRILL_ITEMS]);
  const serviceRush = async (ms: number): Promise<number> => {
    const rush = new Rush(() => s.api.baseUrl, saleId, s.stack.secret, () => drill.now(), { skus: SKUS, concurrency: 32, pauseMs: 0, greedyEvery: 0 });
    const started = performance.now();
    rush.start();
    await sleep(ms);
    await rush.stop();
    return rush.ledger.accepted.size / ((performance.now() - started) / 1000);
  };
  const best: Record<string, number> = {};
  const keep = (name: string, value: number, better: (a: number, b: number) => boolean = (a, b) => a > b) => {
    if (best[name] === undefined || better(value, best[name])) best[name] = value;
  };
  try {
    await serviceRush(1_000); // warm-up: JIT, connections, script cache
    for (const policy of ['everysec', 'always', 'everysec', 'always'] as const) {
      await admin.config('SET', 'appendfsync', policy);
      const one = await redisBenchmark(s.stack.redis.port, 1, 400);
      keep(`one ${policy} ms`, one.avgMs, (a, b) => a < b);
      keep(`32 ${policy}`, (await redisBenchmark(s.stack.redis.port, 32, 10_000)).rps);
      keep(`service ${policy}`, await serviceRush(COST_WINDOW_MS));
    }
    await admin.config('SET', 'appendfsync', restore);
    const lost = (always: number, everysec: number) => Math.round(100 * (1 - always / Math.max(1, everysec)));
    const get = (name: string) => Math.round((best[name] ?? 0) * 100) / 100;
    drill.figures['Redis alone, 1 client: mean write latency everysec (ms)'] = get('one everysec ms');
    drill.figures['Redis alone, 1 client: mean write latency always (ms)'] = get('one always ms');
    drill.figures['Redis alone, 32 clients: writes/s everysec'] = Math.round(get('32 everysec'));
    drill.figures['Redis alone, 32 clients: writes/s always'] = Math.round(get('32 always'));
    drill.figures['Redis alone, 32 clients: throughput lost to always (%)'] = lost(get('32 always'), get('32 everysec'));
    drill.figures['service 201/s everysec (32 lanes)'] = Math.round(get('service everysec'));
    drill.figures['service 201/s always (32 lanes)'] = Math.round(get('service always'));
    drill.figures['service: throughput lost to always (%)'] = lost(get('service always'), get('service everysec'));
    drill.figures['1-minute load average during the measurement'] = Math.round(loadavg()[0]! * 10) / 10;
    drill.event(
      `fsync cost measured: Redis alone ${drill.figures['Redis alone, 32 clients: writes/s everysec']} → ${drill.figures['Redis alone, 32 clients: writes/s always']} writes/s (32 clients), ` +
        `service ${drill.figures['service 201/s everysec (32 lanes)']} → ${drill.figures['service 201/s always (32 lanes)']} 201/s`,
    );
  } finally {
    admin.disconnect();
  }
}

/** redis-benchmark SET with `clients` connections and `requests` requests: requests/s and mean latency. */
async function redisBenchmark(port: number, clients: number, requests: number): Promise<{ rps: number; avgMs: number }> {
  const { stdout } = await execFileAsync(resolveBinary('redis-benchmark'), [
    '-h', '127.0.0.1', '-p', String(port), '-c', String(clients), '-n', String(requests), '-t', 'set', '--csv',
  ]);
  // "test","rps","avg_latency_ms",… then "SET","12345.67","1.234",…
  const row = stdout.trim().split('\n').find((line) => line.startsWith('"SET"'));
  const fields = row?.split(',').map((field) => Number(field.replaceAll('"', ''))) ?? [];
  if (fields.length < 3) throw new Error(`unexpected redis-benchmark output: ${stdout}`);
  return { rps: fields[1]!, avgMs: fields[2]! };
}
