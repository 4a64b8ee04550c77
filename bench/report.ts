// What `npm run bench` concludes from its runs: per-target medians, paired ratios per rep (each
// rep's targets ran back to back, so their ratio cancels most of the shared machine's drift), and
// the Markdown table that goes into README.
import type { ProbeName } from './probes.ts';
import type { TargetName } from './targets.ts';
import type { WrkResult } from './wrk.ts';

export type ProcessName = ProbeName | 'wrk';

const int = (value: number) => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : '–');
const fixed = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const times = (value: number) => `${fixed(value, 2)}×`;

export interface ProcessCpu {
  readonly pid: number | undefined;
  readonly cpuMicros: number;
  readonly microsPerAnswer: number;
  /** CPU over the measured window as a share of one core. */
  readonly percentOfOneCore: number;
  /** Time its threads waited for a CPU, as a share of the window (summed over threads); undefined for wrk. */
  readonly runQueueWaitPercent: number | undefined;
}

export interface CaughtUp {
  readonly count201: number;
  /** Orders the service accepted in total (Redis) and rows in Postgres, when the check ended. */
  readonly accepted: number;
  readonly persisted: number;
  /** From the end of the load until Postgres held every accepted order; null = not within the timeout. */
  readonly delayMs: number | null;
  readonly withinLimit: boolean;
}

export interface Measured {
  readonly rep: number;
  readonly target: TargetName;
  readonly wrk: WrkResult;
  /** Answers whose status is not the one this target should give (e.g. 429, 503 on in-stock). */
  readonly unexpectedAnswers: number;
  readonly cpu: Readonly<Record<ProcessName, ProcessCpu>>;
  /** The processes that work for this target's answers, and their summed µs per answer. */
  readonly charged: readonly ProbeName[];
  readonly chargedMicrosPerAnswer: number;
  readonly caughtUp?: CaughtUp;
}

export interface Ratios {
  readonly rep: number | 'median';
  readonly inStockVsBare: number;
  readonly soldOutVsBare: number;
  readonly inStockVsNaive: number;
  readonly p99InStockVsBare: number;
  readonly p99SoldOutVsBare: number;
  /** The app process's CPU per answer against the bare route's. */
  readonly appCpuSoldOutVsBare: number;
  readonly appCpuInStockVsBare: number;
}

export interface TargetSummary {
  readonly target: TargetName;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly microsPerAnswer: Readonly<Record<ProcessName, number>>;
  readonly percentOfOneCore: Readonly<Record<ProcessName, number>>;
  readonly runQueueWaitPercent: Readonly<Record<ProbeName, number>>;
  readonly chargedMicrosPerAnswer: number;
  readonly wrkPercentOfOneCore: number;
  readonly unexpectedAnswers: number;
}

export interface LoadGenerator {
  readonly tool: string;
  readonly threads: number;
  readonly connections: number;
  readonly maxCpuPercentOfOneCore: number;
  /** On the fastest run, where wrk worked hardest: the rate it could send with its cores fully busy. */
  readonly capacityPerSecond: number;
  /** wrk stayed under 80% of its core(s) and could have sent 1.5× the fastest target's rate. */
  readonly headroom: boolean;
  readonly text: string;
}

/** wrk above this share of its core(s) could be what limits req/s. */
const WRK_BUSY_PERCENT = 80;

export function describeLoadGenerator(
  runs: readonly Measured[],
  settings: { readonly tool: string; readonly threads: number; readonly connections: number; readonly seconds: number },
): LoadGenerator {
  const maxCpu = Math.max(0, ...runs.map((run) => run.wrk.cpuPercentOfOneCore));
  const fastest = runs.reduce<Measured | undefined>((best, run) => (!best || run.wrk.requestsPerSecond > best.wrk.requestsPerSecond ? run : best), undefined);
  const busy = fastest ? fastest.wrk.cpuPercentOfOneCore / 100 : 0;
  const capacity = fastest && busy > 0 ? fastest.wrk.requestsPerSecond / busy : Number.POSITIVE_INFINITY;
  const headroom = maxCpu < WRK_BUSY_PERCENT && (!fastest || capacity > 1.5 * fastest.wrk.requestsPerSecond);
  const text =
    `${settings.tool.replace(/ Copyright.*$/, '')}, ${settings.threads} thread(s), ${settings.connections} connections, ${settings.seconds} s per run; ` +
    (fastest
      ? `on the fastest run (${fastest.target}, ${int(fastest.wrk.requestsPerSecond)} req/s) wrk used ${fixed(busy * 100, 0)}% of its core(s), ` +
        `so it could send ≈ ${int(capacity)} req/s (${fixed(1 / busy, 1)}× headroom); its CPU peaked at ${fixed(maxCpu, 0)}% of a core over all runs`
      : 'no runs');
  return { tool: settings.tool, threads: settings.threads, connections: settings.connections, maxCpuPercentOfOneCore: maxCpu, capacityPerSecond: capacity, headroom, text };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const PROBES: readonly ProbeName[] = ['app', 'redis', 'postgres'];
const PROCESSES: readonly ProcessName[] = [...PROBES, 'wrk'];

export function summarise(runs: readonly Measured[], targets: readonly TargetName[]): TargetSummary[] {
  return targets.map((target) => {
    const mine = runs.filter((run) => run.target === target);
    const med = (pick: (run: Measured) => number) => median(mine.map(pick));
    return {
      target,
      requestsPerSecond: med((run) => run.wrk.requestsPerSecond),
      p50Ms: med((run) => run.wrk.latencyMs.p50),
      p99Ms: med((run) => run.wrk.latencyMs.p99),
      microsPerAnswer: Object.fromEntries(PROCESSES.map((name) => [name, med((run) => run.cpu[name].microsPerAnswer)])) as Record<ProcessName, number>,
      percentOfOneCore: Object.fromEntries(PROCESSES.map((name) => [name, med((run) => run.cpu[name].percentOfOneCore)])) as Record<ProcessName, number>,
      runQueueWaitPercent: Object.fromEntries(PROBES.map((name) => [name, med((run) => run.cpu[name].runQueueWaitPercent ?? 0)])) as Record<ProbeName, number>,
      chargedMicrosPerAnswer: med((run) => run.chargedMicrosPerAnswer),
      wrkPercentOfOneCore: Math.max(...mine.map((run) => run.wrk.cpuPercentOfOneCore)),
      unexpectedAnswers: mine.reduce((sum, run) => sum + run.unexpectedAnswers, 0),
    };
  });
}

/** Ratios within each rep that ran all four targets, then their medians. */
export function pairedRatios(runs: readonly Measured[]): Ratios[] {
  const reps = [...new Set(runs.map((run) => run.rep))];
  const perRep: Ratios[] = [];
  for (const rep of reps) {
    const get = (target: TargetName) => runs.find((run) => run.rep === rep && run.target === target);
    const [bare, inStock, soldOut, naive] = [get('bare'), get('in-stock'), get('sold-out'), get('naive-pg')];
    if (!bare || !inStock || !soldOut || !naive) continue;
    perRep.push({
      rep,
      inStockVsBare: inStock.wrk.requestsPerSecond / bare.wrk.requestsPerSecond,
      soldOutVsBare: soldOut.wrk.requestsPerSecond / bare.wrk.requestsPerSecond,
      inStockVsNaive: inStock.wrk.requestsPerSecond / naive.wrk.requestsPerSecond,
      p99InStockVsBare: inStock.wrk.latencyMs.p99 / bare.wrk.latencyMs.p99,
      p99SoldOutVsBare: soldOut.wrk.latencyMs.p99 / bare.wrk.latencyMs.p99,
      appCpuSoldOutVsBare: soldOut.cpu.app.microsPerAnswer / bare.cpu.app.microsPerAnswer,
      appCpuInStockVsBare: inStock.cpu.app.microsPerAnswer / bare.cpu.app.microsPerAnswer,
    });
  }
  if (perRep.length === 0) return [];
  const med = (pick: (ratios: Ratios) => number) => median(perRep.map(pick));
  return [
    ...perRep,
    {
      rep: 'median',
      inStockVsBare: med((r) => r.inStockVsBare),
      soldOutVsBare: med((r) => r.soldOutVsBare),
      inStockVsNaive: med((r) => r.inStockVsNaive),
      p99InStockVsBare: med((r) => r.p99InStockVsBare),
      p99SoldOutVsBare: med((r) => r.p99SoldOutVsBare),
      appCpuSoldOutVsBare: med((r) => r.appCpuSoldOutVsBare),
      appCpuInStockVsBare: med((r) => r.appCpuInStockVsBare),
    },
  ];
}


export function markdown(summaries: readonly TargetSummary[], ratios: readonly Ratios[], runs: readonly Measured[], loadGenerator: string): string {
  const lines = [
    '| target | req/s | p50 ms | p99 ms | CPU µs/answer: app | Redis | Postgres | charged total | wrk CPU (% of a core) |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  const chargedSet = new Map(runs.map((run) => [run.target, run.charged] as const));
  for (const s of summaries) {
    const charged = chargedSet.get(s.target) ?? [];
    const cell = (name: ProbeName) => (charged.includes(name) ? int(s.microsPerAnswer[name]) : `(${int(s.microsPerAnswer[name])})`);
    lines.push(
      `| ${s.target} | ${int(s.requestsPerSecond)} | ${fixed(s.p50Ms, 2)} | ${fixed(s.p99Ms, 2)} | ${cell('app')} | ${cell('redis')} | ${cell('postgres')} | **${int(s.chargedMicrosPerAnswer)}** | ${fixed(s.wrkPercentOfOneCore, 0)}% |`,
    );
  }
  lines.push(
    '',
    '| target | CPU % of one core during the run (waiting for a CPU): app | Redis | Postgres | wrk |',
    '|---|---|---|---|---|',
  );
  for (const s of summaries) {
    const pct = (name: ProbeName) => `${fixed(s.percentOfOneCore[name], 0)}% (${fixed(s.runQueueWaitPercent[name], 0)}%)`;
    lines.push(`| ${s.target} | ${pct('app')} | ${pct('redis')} | ${pct('postgres')} | ${fixed(s.percentOfOneCore.wrk, 0)}% |`);
  }
  lines.push(
    '',
    '| rep | in-stock / bare | sold-out / bare | in-stock / naive-pg | p99 in-stock / bare | p99 sold-out / bare | app CPU per answer: sold-out / bare | in-stock / bare |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const r of ratios) {
    const cells = [r.inStockVsBare, r.soldOutVsBare, r.inStockVsNaive, r.p99InStockVsBare, r.p99SoldOutVsBare, r.appCpuSoldOutVsBare, r.appCpuInStockVsBare].map(times);
    const row = `| ${r.rep} | ${cells.join(' | ')} |`;
    lines.push(r.rep === 'median' ? row.replace(/\| ([\d.]+×)/g, '| **$1**') : row);
  }
  const checks = runs.flatMap((run) => (run.caughtUp ? [run.caughtUp] : []));
  if (checks.length > 0) {
    const delays = checks.map((check) => (check.delayMs === null ? 'not caught up' : `${int(check.delayMs)} ms`));
    const verdict = checks.every((check) => check.withinLimit) ? 'every in-stock run caught up within 2 s' : '**NOT within 2 s on every in-stock run**';
    lines.push('', `Postgres caught up (every accepted order persisted) after the end of the load: ${delays.join(', ')} — ${verdict}.`);
  }
  lines.push(
    '',
    `Medians over reps. CPU from /proc/<pid>/stat; "charged total" sums the processes in plain figures (a figure in parentheses ` +
      `is that process's CPU during the run, not charged to the answers: background or other work on the shared machine). ` +
      `"Waiting for a CPU" is run-queue time from /proc/<pid>/task/*/schedstat: high figures mean the machine, not the process, set the pace. ` +
      `Answers with an unexpected status (e.g. 503 from load shedding): ${summaries.map((s) => `${s.target} ${int(s.unexpectedAnswers)}`).join(', ')}. ` +
      `Load generator: ${loadGenerator}.`,
  );
  return lines.join('\n');
}
