// What a load run will do: the scenario's defaults filled in with what was asked, checked before
// anything starts (positive integers, at most 999 SKUs, known comparison targets).
import { COMPARE_TARGETS, type CompareTarget } from './compare.ts';
import { KEYED_SHARE, MAX_DURATION_SECONDS, MAX_QUANTITY, SCENARIOS, type ScenarioName } from './scenarios.ts';

/** What may be asked of a run's traffic; every field defaults from the scenario. */
export interface PlanOptions {
  readonly scenario?: ScenarioName;
  readonly duration?: number;
  readonly connections?: number;
  readonly rate?: number;
  readonly stock?: number;
  readonly skus?: number;
  readonly perUserLimit?: number;
  readonly users?: number;
  /** Seconds of the phase after sell-out where every attempt meets a sold-out SKU (0 = none). */
  readonly soldOutDuration?: number;
  /** Share (0–1) of fresh attempts sent with an Idempotency-Key (default 0.8). */
  readonly keyedShare?: number;
  /** Seconds of unmeasured traffic to each target first (ours: on a separate sale), so no target is measured cold. */
  readonly warmup?: number;
  readonly compare?: readonly CompareTarget[];
}

export interface Plan {
  readonly scenario: ScenarioName;
  readonly duration: number;
  readonly connections: number;
  readonly rate: number | undefined;
  readonly stock: number;
  readonly skus: number;
  readonly perUserLimit: number;
  readonly users: number;
  readonly soldOutDuration: number;
  readonly warmup: number;
  readonly hotShare: number;
  readonly keyedShare: number;
  readonly compare: readonly CompareTarget[];
}

export function resolvePlan(options: PlanOptions): Plan {
  const scenario = options.scenario ?? 'rush';
  const base = SCENARIOS[scenario];
  const duration = Math.min(MAX_DURATION_SECONDS, options.duration ?? base.duration);
  const rate = options.rate ?? base.rate;
  const skus = options.skus ?? 20;
  const hotShare = skus > 1 ? base.hotShare : 1;
  // Rate runs sell, not sell out: enough stock for the busiest SKU's share of every attempt.
  const busiest = Math.max(hotShare, skus > 1 ? (1 - hotShare) / (skus - 1) : 1);
  const stock = options.stock ?? base.stock ?? Math.ceil((rate ?? 1000) * duration * busiest * MAX_QUANTITY * 1.2);
  const plan: Plan = {
    scenario,
    duration,
    connections: options.connections ?? base.connections,
    rate,
    stock,
    skus,
    perUserLimit: options.perUserLimit ?? 2,
    users: options.users ?? 10_000,
    soldOutDuration: Math.min(MAX_DURATION_SECONDS, options.soldOutDuration ?? Math.min(5, duration)),
    warmup: Math.min(60, options.warmup ?? Math.min(2, duration)),
    hotShare,
    keyedShare: options.keyedShare ?? KEYED_SHARE,
    compare: [...new Set(options.compare ?? [])],
  };
  for (const [name, value] of Object.entries({ duration, connections: plan.connections, stock, skus, perUserLimit: plan.perUserLimit, users: plan.users })) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer (got ${value})`);
  }
  if (skus > 999) throw new Error('skus must be at most 999 (a sale holds up to 1,000 items)');
  if (!(plan.keyedShare >= 0 && plan.keyedShare <= 1)) throw new Error(`keyedShare must be between 0 and 1 (got ${plan.keyedShare})`);
  if (rate !== undefined && (!Number.isInteger(rate) || rate < 1)) throw new Error(`rate must be a positive integer (got ${rate})`);
  for (const target of plan.compare) if (!COMPARE_TARGETS.includes(target)) throw new Error(`unknown comparison target ${target}`);
  return plan;
}
