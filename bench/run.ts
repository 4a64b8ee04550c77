// `npm run bench`: side-by-side runs of a bare Fastify POST route, the service's in-stock and
// sold-out paths and the naive Postgres design, alternated over reps, driven by wrk on 127.0.0.1.
// For each run: req/s, p50/p99, and CPU µs per answer of every process involved (read from /proc),
// wrk's own CPU (to show it has headroom) and, on in-stock runs, how long after the load Postgres
// held every accepted order (must be ≤ 2 s). Writes reports/bench/report.json and prints the
// Markdown table for README. `--expiry` adds an expiry storm (bench/expiry-storm.ts).
//
//   npm run bench -- [--reps 3] [--seconds 10] [--connections 50] [--threads 1] [--warmup 2]
//                    [--users 20000] [--out reports/bench] [--expiry] [--expiry-orders 20000]
//                    [--expiry-window 5]     (--reps 0: the expiry storm alone)
//
// Uses REDIS_URL and DATABASE_URL (a Postgres server: the bench creates and drops its own databases).
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../tools/processes.ts';
import { tokens } from '../tools/tokens.ts';
import { describeExpiryStorm, runExpiryStorm, type ExpiryStormResult } from './expiry-storm.ts';
import { postmasterPid, redisServerPid, snapshot, type Probe, type ProbeName, type Snapshot } from './probes.ts';
import { ticksToMicros } from './proc-cpu.ts';
import { describeLoadGenerator, markdown, pairedRatios, type LoadGenerator, summarise, type CaughtUp, type Measured, type ProcessCpu, type ProcessName, type Ratios, type TargetSummary } from './report.ts';
import { ORDER_BODY, startTargets, TARGET_NAMES, type Target, type TargetName } from './targets.ts';
import { runWrk, wrkVersion, type WrkRun } from './wrk.ts';

export interface BenchOptions {
  readonly reps: number;
  readonly seconds: number;
  readonly connections: number;
  readonly threads: number;
  readonly warmupSeconds: number;
  readonly users: number;
  readonly outDir: string;
  readonly redisUrl: string;
  /** A Postgres server URL; the bench creates fresh databases on it and drops them afterwards. */
  readonly postgresUrl: string;
  /** Settings on top of the service's production defaults (tests turn shedding off on a busy machine). */
  readonly serviceEnv: Readonly<Record<string, string>>;
  readonly expiry: { readonly orders: number; readonly windowSeconds: number } | undefined;
  readonly log: (line: string) => void;
}

export interface BenchReport {
  readonly generatedAt: string;
  readonly settings: Omit<BenchOptions, 'log' | 'redisUrl' | 'postgresUrl' | 'outDir'>;
  readonly machine: { readonly cpus: number; readonly loadAverageBefore: readonly number[]; readonly loadAverageAfter: readonly number[] };
  readonly loadGenerator: LoadGenerator;
  readonly pids: Readonly<Record<string, number>>;
  readonly runs: readonly Measured[];
  readonly summary: readonly TargetSummary[];
  readonly ratios: readonly Ratios[];
  readonly postgresCaughtUp: boolean;
  readonly expiry: ExpiryStormResult | undefined;
  readonly markdown: string;
}

const JWT_SECRET = 'bench-secret-at-least-16-chars';
const CAUGHT_UP_LIMIT_MS = 2_000;
const CAUGHT_UP_TIMEOUT_MS = 30_000;
/** Which processes work for each target's answers (the others still run, and are shown apart). */
const CHARGED: Readonly<Record<TargetName, readonly ProbeName[]>> = {
  bare: ['app'],
  'in-stock': ['app', 'redis', 'postgres'],
  // A sold-out answer never reaches Postgres (shown apart, as background work).
  'sold-out': ['app', 'redis'],
  'naive-pg': ['app', 'postgres'],
};

/** One token per shopper (distinct users, so the per-user rate limit of 10/s never bites), one a line. */
async function writeTokens(file: string, users: number, secret: string): Promise<void> {
  const minted = tokens(secret);
  // The wrk script adds the scheme itself.
  const lines = Array.from({ length: users }, (_, i) => minted.shopper(`shopper-${i}`).replace(/^Bearer /, ''));
  await writeFile(file, `${lines.join('\n')}\n`);
}

/** Polls until Postgres holds every order the service accepted; the delay counts from the end of the load. */
async function waitCaughtUp(target: Target, endedAt: number, count201: number): Promise<CaughtUp> {
  const persistence = target.persistence;
  if (!persistence) throw new Error(`${target.name} has no persistence to check`);
  for (;;) {
    const { accepted, persisted } = await persistence();
    const now = Date.now();
    if (persisted >= accepted) {
      const delayMs = Math.max(0, now - endedAt);
      return { count201, accepted, persisted, delayMs, withinLimit: delayMs <= CAUGHT_UP_LIMIT_MS };
    }
    if (now - endedAt > CAUGHT_UP_TIMEOUT_MS) return { count201, accepted, persisted, delayMs: null, withinLimit: false };
    await sleep(50);
  }
}

async function measure(target: Target, rep: number, probes: readonly Probe[], wrkRun: WrkRun, warmupSeconds: number): Promise<Measured> {
  snapshot(probes); // fails clearly when a process is gone, rather than as wrk's "connection refused"
  if (warmupSeconds > 0) {
    await runWrk({ ...wrkRun, seconds: warmupSeconds });
    // The warm-up's orders reach Postgres before the measured window opens, so their cost is not charged to it.
    if (target.persistence) await waitCaughtUp(target, Date.now(), 0);
    await sleep(300);
  }
  const before: Snapshot = snapshot(probes);
  const startedAt = process.hrtime.bigint();
  const wrk = await runWrk(wrkRun);
  const count201 = wrk.statuses['201'] ?? 0;
  const caughtUp = target.persistence ? await waitCaughtUp(target, wrk.endedAt, count201) : undefined;
  // Taken after the catch-up: persisting the run's orders is part of what they cost.
  const after: Snapshot = snapshot(probes);
  const windowMicros = Number(process.hrtime.bigint() - startedAt) / 1000;

  const answers = Math.max(1, wrk.requests);
  const cpu = {} as Record<ProcessName, ProcessCpu>;
  for (const probe of probes) {
    const [start, end] = [before.get(probe.name), after.get(probe.name)];
    const cpuMicros = ticksToMicros((end?.ticks ?? 0) - (start?.ticks ?? 0));
    const waitMicros = Math.max(0, (end?.runQueueWaitMicros ?? 0) - (start?.runQueueWaitMicros ?? 0));
    cpu[probe.name] = {
      pid: probe.pid,
      cpuMicros,
      microsPerAnswer: cpuMicros / answers,
      percentOfOneCore: (100 * cpuMicros) / windowMicros,
      runQueueWaitPercent: (100 * waitMicros) / windowMicros,
    };
  }
  cpu.wrk = { pid: undefined, cpuMicros: wrk.cpuMicros, microsPerAnswer: wrk.cpuMicros / answers, percentOfOneCore: wrk.cpuPercentOfOneCore, runQueueWaitPercent: undefined };
  const charged = CHARGED[target.name];
  return {
    rep,
    target: target.name,
    wrk,
    unexpectedAnswers: wrk.requests - (wrk.statuses[String(target.expectedStatus)] ?? 0),
    cpu,
    charged,
    chargedMicrosPerAnswer: charged.reduce((sum, name) => sum + cpu[name].microsPerAnswer, 0),
    caughtUp,
  };
}

function describeRun(run: Measured): string {
  const c = run.cpu;
  const caught = run.caughtUp ? ` caught-up ${run.caughtUp.delayMs === null ? 'NO' : `${run.caughtUp.delayMs} ms`}` : '';
  const odd = run.unexpectedAnswers > 0 ? ` UNEXPECTED ${run.unexpectedAnswers} ${JSON.stringify(run.wrk.statuses)}` : '';
  return (
    `rep ${run.rep} ${run.target.padEnd(8)} ${Math.round(run.wrk.requestsPerSecond).toString().padStart(6)} req/s ` +
    `p50 ${run.wrk.latencyMs.p50.toFixed(2)} p99 ${run.wrk.latencyMs.p99.toFixed(2)} ms | µs/answer app ${c.app.microsPerAnswer.toFixed(0)} ` +
    `redis ${c.redis.microsPerAnswer.toFixed(0)} pg ${c.postgres.microsPerAnswer.toFixed(0)} wrk ${c.wrk.microsPerAnswer.toFixed(0)} ` +
    `(wrk ${c.wrk.percentOfOneCore.toFixed(0)}% of a core; app ${c.app.percentOfOneCore.toFixed(0)}% busy, ${(c.app.runQueueWaitPercent ?? 0).toFixed(0)}% waiting for a CPU)${caught}${odd}`
  );
}

export async function runBench(options: BenchOptions): Promise<{ report: BenchReport; file: string }> {
  const tool = wrkVersion();
  const logDir = join(options.outDir, 'logs');
  await mkdir(logDir, { recursive: true });
  const tokensFile = join(options.outDir, 'tokens.txt');
  await writeTokens(tokensFile, options.users, JWT_SECRET);
  const loadAverageBefore = loadavg();
  const shared: Probe[] = [
    { name: 'redis', pid: await redisServerPid(options.redisUrl) },
    { name: 'postgres', pid: await postmasterPid(options.postgresUrl) },
  ];

  const runs: Measured[] = [];
  const pids: Record<string, number> = Object.fromEntries(shared.map((probe) => [probe.name, probe.pid]));
  if (options.reps > 0) {
    const targets = await startTargets({
      redisUrl: options.redisUrl,
      postgresUrl: options.postgresUrl,
      jwtSecret: JWT_SECRET,
      logDir,
      serviceEnv: options.serviceEnv,
    });
    try {
      for (const target of targets.byName.values()) pids[target.name] = target.appPid;
      for (let rep = 1; rep <= options.reps; rep++) {
        // Each rep starts one target later, so no target always runs first (or right after another).
        const order = TARGET_NAMES.map((_, i) => TARGET_NAMES[(i + rep - 1) % TARGET_NAMES.length] as TargetName);
        for (const name of order) {
          const target = targets.byName.get(name) as Target;
          const wrkRun: WrkRun = {
            url: target.url,
            path: target.path,
            body: ORDER_BODY,
            tokensFile,
            seconds: options.seconds,
            connections: options.connections,
            threads: options.threads,
          };
          const run = await measure(target, rep, [{ name: 'app', pid: target.appPid }, ...shared], wrkRun, options.warmupSeconds);
          runs.push(run);
          options.log(describeRun(run));
        }
      }
    } finally {
      await targets.stop();
    }
  }

  const expiry = options.expiry
    ? await runExpiryStorm({
        redisUrl: options.redisUrl,
        postgresUrl: options.postgresUrl,
        logDir,
        orders: options.expiry.orders,
        windowSeconds: options.expiry.windowSeconds,
        log: options.log,
      })
    : undefined;

  const summary = summarise(runs, TARGET_NAMES.filter((name) => runs.some((run) => run.target === name)));
  const ratios = pairedRatios(runs);
  const loadGenerator = describeLoadGenerator(runs, { tool, threads: options.threads, connections: options.connections, seconds: options.seconds });
  const report: BenchReport = {
    generatedAt: new Date().toISOString(),
    settings: {
      reps: options.reps,
      seconds: options.seconds,
      connections: options.connections,
      threads: options.threads,
      warmupSeconds: options.warmupSeconds,
      users: options.users,
      serviceEnv: options.serviceEnv,
      expiry: options.expiry,
    },
    machine: { cpus: cpus().length, loadAverageBefore, loadAverageAfter: loadavg() },
    loadGenerator,
    pids,
    runs,
    summary,
    ratios,
    postgresCaughtUp: runs.every((run) => run.caughtUp?.withinLimit ?? true),
    expiry,
    markdown: markdown(summary, ratios, runs, loadGenerator.text),
  };
  const file = join(options.outDir, 'report.json');
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return { report, file };
}

function positive(name: string, value: string | undefined, allowZero = false): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < (allowZero ? 0 : 1)) throw new Error(`--${name} must be an integer ≥ ${allowZero ? 0 : 1} (got ${String(value)})`);
  return number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      connections: { type: 'string', default: '50' },
      threads: { type: 'string', default: '1' },
      warmup: { type: 'string', default: '2' },
      users: { type: 'string', default: '20000' },
      out: { type: 'string', default: join(REPO_ROOT, 'reports', 'bench') },
      expiry: { type: 'boolean', default: false },
      'expiry-orders': { type: 'string', default: '20000' },
      'expiry-window': { type: 'string', default: '5' },
      // The service's API_PROCESSES; unset, its production default (one API process per core).
      'api-processes': { type: 'string' },
    },
  });
  const apiProcesses = values['api-processes'];
  if (apiProcesses !== undefined && apiProcesses !== 'auto') positive('api-processes', apiProcesses);
  const { report, file } = await runBench({
    reps: positive('reps', values.reps, true),
    seconds: positive('seconds', values.seconds),
    connections: positive('connections', values.connections),
    threads: positive('threads', values.threads),
    warmupSeconds: positive('warmup', values.warmup, true),
    users: positive('users', values.users),
    outDir: resolve(values.out),
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    postgresUrl: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    serviceEnv: apiProcesses === undefined ? {} : { API_PROCESSES: apiProcesses },
    expiry: values.expiry ? { orders: positive('expiry-orders', values['expiry-orders']), windowSeconds: positive('expiry-window', values['expiry-window']) } : undefined,
    log: (line) => console.log(line),
  });
  // --reps 0 is the expiry storm alone: no table of empty rows.
  if (report.runs.length > 0) console.log(`\n${report.markdown}\n`);
  if (report.expiry) console.log(`${describeExpiryStorm(report.expiry)}\n`);
  console.log(`report: ${file}`);
  if (!report.postgresCaughtUp) process.exitCode = 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
