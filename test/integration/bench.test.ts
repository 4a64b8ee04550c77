// `npm run bench` end to end, tiny: one rep of one second per target, plus a small expiry storm.
// wrk must be installed (scripts/install-bench-tools.sh; CI runs it): without it this test fails.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runBench, type BenchReport } from '../../bench/run.ts';
import { TARGET_NAMES } from '../../bench/targets.ts';
import { wrkVersion } from '../../bench/wrk.ts';

let outDir: string;
beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'bench-'));
});
afterAll(async () => {
  await rm(outDir, { recursive: true, force: true });
});

describe('npm run bench', () => {
  it('when wrk is looked for, then it is installed (run scripts/install-bench-tools.sh as root)', () => {
    expect(wrkVersion()).toMatch(/wrk/);
  });

  it('when one short rep runs, then every target answered, each process has CPU figures, Postgres caught up and report.json is written', async () => {
    const services = inject('services');
    const lines: string[] = [];
    const { report, file } = await runBench({
      reps: 1,
      seconds: 1,
      connections: 10,
      threads: 1,
      warmupSeconds: 0,
      users: 2_000,
      outDir,
      redisUrl: services.redisUrl,
      postgresUrl: services.postgresUrl,
      // Other test files share the cores: shedding would turn their load into 503s here.
      serviceEnv: { SHED_EVENT_LOOP_DELAY_MS: '0' },
      expiry: { orders: 200, windowSeconds: 1 },
      log: (line) => lines.push(line),
    });

    expect(report.runs.map((run) => run.target).sort()).toEqual([...TARGET_NAMES].sort());
    for (const run of report.runs) {
      expect(run.wrk.requests, run.target).toBeGreaterThan(0);
      expect(run.cpu.app.cpuMicros, `${run.target} app CPU`).toBeGreaterThan(0);
      expect(run.cpu.wrk.cpuMicros, `${run.target} wrk CPU`).toBeGreaterThan(0);
      expect(run.chargedMicrosPerAnswer, run.target).toBeGreaterThan(0);
      for (const name of ['redis', 'postgres'] as const) expect(run.cpu[name].cpuMicros, `${run.target} ${name}`).toBeGreaterThanOrEqual(0);
    }
    const byTarget = (name: string) => report.runs.find((run) => run.target === name);
    expect(byTarget('in-stock')?.wrk.statuses['201']).toBeGreaterThan(0);
    expect(byTarget('in-stock')?.cpu.redis.cpuMicros).toBeGreaterThan(0);
    expect(byTarget('in-stock')?.cpu.postgres.cpuMicros).toBeGreaterThan(0);
    expect(byTarget('in-stock')?.caughtUp?.persisted).toBeGreaterThanOrEqual(byTarget('in-stock')?.caughtUp?.count201 ?? Infinity);
    expect(byTarget('sold-out')?.wrk.statuses['409']).toBeGreaterThan(0);
    expect(byTarget('sold-out')?.wrk.statuses['201']).toBeUndefined();
    expect(byTarget('naive-pg')?.wrk.statuses['201']).toBeGreaterThan(0);
    expect(report.ratios.map((ratios) => ratios.rep)).toEqual([1, 'median']);

    // The expiry storm: every unit came back (the run throws otherwise), Postgres says expired for
    // each order, and the rates, the worker's CPU and the memory per order are all measured.
    const expiry = report.expiry;
    expect(expiry?.orders).toBe(200);
    expect(expiry?.expiredInPostgres).toBe(200);
    expect(expiry?.lastUnitLagMs).toBeGreaterThanOrEqual(0);
    expect(expiry?.worstUnitLagMs).toBeGreaterThanOrEqual(0);
    expect(expiry?.peakExpiryRate).toBeGreaterThan(0);
    expect(expiry?.meanExpiryRate).toBeGreaterThan(0);
    expect(expiry?.workerCpuMicrosPerOrder).toBeGreaterThan(0);
    expect(expiry?.persistedAfterMs).toBeGreaterThanOrEqual(0);
    for (const state of ['pending', 'final'] as const) {
      expect(expiry?.memory[state].bytes, state).toBeGreaterThan(0);
      expect(Object.keys(expiry?.memory[state].byFamily ?? {}), state).toContain('order:<id>');
    }

    expect(existsSync(file)).toBe(true);
    const written = JSON.parse(readFileSync(file, 'utf8')) as BenchReport;
    expect(written.summary.map((summary) => summary.target)).toEqual([...TARGET_NAMES]);
    expect(report.markdown).toContain('| in-stock |');
    expect(lines.filter((line) => line.startsWith('rep 1 '))).toHaveLength(4);
  }, 180_000);
});
