// What a load run produced, as report.json holds it and the reports render it: a summary per
// phase and target, ours-over-theirs ratios, the invariants and how persistence caught up.
import type { CompareTarget } from './compare.ts';
import type { PhaseResult } from './driver.ts';
import type { SaleReport } from './evidence.ts';
import type { InvariantResult } from './invariants.ts';
import type { Plan } from './plan.ts';
import type { LatencySummary, TimelinePoint } from './recorder.ts';
import type { ScenarioName } from './scenarios.ts';

export type TargetName = 'reserve' | CompareTarget;

export interface RunSummary {
  readonly phase: string;
  readonly target: TargetName;
  readonly durationSeconds: number;
  readonly requestsPerSecond: number;
  readonly latency: LatencySummary;
  readonly answers: number;
  readonly unanswered: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly byStatus: Readonly<Record<string, number>>;
  readonly byCode: Readonly<Record<string, number>>;
  readonly timeline: readonly TimelinePoint[];
}

export interface Ratio {
  readonly name: string;
  readonly value: number;
  readonly goal?: string;
  readonly met?: boolean;
}

export interface Persistence {
  readonly drained: boolean;
  readonly drainSeconds: number;
  readonly ordersAccepted: number | undefined;
  readonly ordersPersisted: number | undefined;
  /** The service's operator report of the sale after the run (per SKU: sold, available, state). */
  readonly report: SaleReport | undefined;
}

export interface LoadResult {
  readonly passed: boolean;
  readonly scenario: ScenarioName;
  readonly saleId: string;
  readonly origin: string;
  readonly startedAt: string;
  readonly plan: Plan;
  readonly runs: readonly RunSummary[];
  readonly ratios: readonly Ratio[];
  readonly invariants: readonly InvariantResult[];
  readonly persistence: Persistence;
  readonly files: { readonly json: string; readonly html: string };
}

/** A phase's result without the per-request detail (orders, unanswered attempts) report.json need not hold. */
export function summarise(phase: string, target: TargetName, result: PhaseResult): RunSummary {
  return {
    phase,
    target,
    durationSeconds: result.durationSeconds,
    requestsPerSecond: result.requestsPerSecond,
    latency: result.latency,
    answers: result.answers,
    unanswered: result.unanswered.length,
    errors: result.errors,
    timeouts: result.timeouts,
    byStatus: result.byStatus,
    byCode: result.byCode,
    timeline: result.timeline,
  };
}

/** Ours over theirs per phase and comparison target: throughput, and p99 latency. */
export function ratios(runs: readonly RunSummary[], plan: Plan): Ratio[] {
  const find = (phase: string, target: TargetName) => runs.find((run) => run.phase === phase && run.target === target);
  const out: Ratio[] = [];
  const ratio = (value: number, of: number) => Math.round((value / Math.max(of, 1e-9)) * 100) / 100;
  for (const phase of [plan.scenario, 'sold-out']) {
    const ours = find(phase, 'reserve');
    for (const target of plan.compare) {
      const theirs = find(phase, target);
      if (!ours || !theirs) continue;
      const throughput = ratio(ours.requestsPerSecond, theirs.requestsPerSecond);
      const goal = phase === 'sold-out' && target === 'ceiling' ? { goal: '≥ 0.9×', met: throughput >= 0.9 } : {};
      out.push({ name: `${phase}: reserve/${target} req/s`, value: throughput, ...goal });
      out.push({ name: `${phase}: reserve/${target} p99 latency`, value: ratio(ours.latency.p99Ms, theirs.latency.p99Ms) });
    }
  }
  return out;
}
