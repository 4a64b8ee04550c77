// runLoad: one load test end to end — start (or reach) the service, create the sale, drive the
// scenario and a sold-out phase, check the invariants, drive the comparison targets one at a time,
// and write report.json and report.html. Used by the CLI (cli.ts) and by `npm run demo`.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { COMPARE_TARGETS, startTarget, type CompareTarget } from './compare.ts';
import { runPhase, type PhaseResult, type Progress } from './driver.ts';
import { gatherRecorded, type SaleReport } from './evidence.ts';
import { checkInvariants, passed, type InvariantResult, type ItemTruth } from './invariants.ts';
import type { AcceptedOrder, LatencySummary, TimelinePoint } from './recorder.ts';
import { renderHtml } from './report-html.ts';
import {
  KEYED_SHARE,
  lowStockLevel,
  MAX_DURATION_SECONDS,
  MAX_QUANTITY,
  REPEAT_SHARE,
  saleBody,
  saleItems,
  SCENARIOS,
  SOLD_OUT_SKU,
  Tokens,
  Traffic,
  type SaleItemSpec,
  type ScenarioName,
  type TrafficMix,
} from './scenarios.ts';
import { startServiceProcess, type StartedService } from './service-process.ts';

export { COMPARE_TARGETS, type CompareTarget } from './compare.ts';
export type { InvariantResult } from './invariants.ts';
export { SCENARIOS, SCENARIO_NAMES, type ScenarioName } from './scenarios.ts';

/** The service's own default secret in development, for --url runs that name none. */
const DEVELOPMENT_JWT_SECRET = 'development-only-secret-do-not-use';

export interface LoadOptions {
  readonly scenario?: ScenarioName;
  /** An already running service; otherwise the kit starts one (and stops it afterwards). */
  readonly url?: string;
  readonly redisUrl?: string;
  /** The service's database: where the invariants read `orders` (and naive-pg keeps its tables). */
  readonly databaseUrl?: string;
  /** Starting the service: create a fresh database on databaseUrl's server (default true). */
  readonly freshDatabase?: boolean;
  /** Starting the service: its REDIS_PREFIX (default: a fresh one). */
  readonly redisPrefix?: string;
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
  readonly outDir?: string;
  readonly compare?: readonly CompareTarget[];
  readonly jwtSecret?: string;
  readonly progress?: Progress;
  /** Keep the fresh database and Redis keys of a service the kit started. */
  readonly keep?: boolean;
  /** Starting the service: extra environment for it. */
  readonly serviceEnv?: Readonly<Record<string, string>>;
  /** Bound on the wait for Postgres to hold every accepted order. */
  readonly persistTimeoutSeconds?: number;
  readonly log?: (line: string) => void;
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
  readonly persistence: {
    readonly drained: boolean;
    readonly drainSeconds: number;
    readonly ordersAccepted: number | undefined;
    readonly ordersPersisted: number | undefined;
    /** The service's operator report of the sale after the run (per SKU: sold, available, state). */
    readonly report: SaleReport | undefined;
  };
  readonly files: { readonly json: string; readonly html: string };
}

export function resolvePlan(options: LoadOptions): Plan {
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

async function adminPost(origin: string, token: string, path: string, body: unknown): Promise<Response> {
  return fetch(`${origin}${path}`, {
    method: 'POST',
    headers: { authorization: token, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
}

/** Buys the one unit of the probe SKU, so the sold-out phase meets a sold-out item. */
async function buyProbe(origin: string, saleId: string, tokens: Tokens): Promise<AcceptedOrder> {
  const userId = 'load-test-probe';
  const response = await adminPost(origin, tokens.shopper(userId), `/v1/sales/${saleId}/orders`, { sku: SOLD_OUT_SKU, quantity: 1 });
  const order = (await response.json()) as { orderId?: string };
  if (response.status !== 201 || !order.orderId) throw new Error(`buying the sold-out probe failed: ${response.status} ${JSON.stringify(order)}`);
  return { orderId: order.orderId, userId, sku: SOLD_OUT_SKU, quantity: 1, key: undefined, replayed: false };
}

function summarise(phase: string, target: TargetName, result: PhaseResult): RunSummary {
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

function ratios(runs: readonly RunSummary[], plan: Plan): Ratio[] {
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

export async function runLoad(options: LoadOptions = {}): Promise<LoadResult> {
  const plan = resolvePlan(options);
  const log = options.log ?? (() => undefined);
  const progress = options.progress ?? 'off';
  const outDir = resolve(options.outDir ?? 'reports');
  await mkdir(outDir, { recursive: true });
  const tag = randomBytes(3).toString('hex');
  const saleId = `load-${plan.scenario}-${tag}`;
  const jwtSecret = options.jwtSecret ?? (options.url ? DEVELOPMENT_JWT_SECRET : randomBytes(24).toString('hex'));
  const startedAt = new Date().toISOString();

  let service: StartedService | undefined;
  if (!options.url) {
    if (!options.redisUrl || !options.databaseUrl) throw new Error('without --url, give --redis and --database (or REDIS_URL and DATABASE_URL)');
    log('starting the service (node --import tsx src/main.ts all) …');
    service = await startServiceProcess({
      redisUrl: options.redisUrl,
      databaseUrl: options.databaseUrl,
      freshDatabase: options.freshDatabase ?? true,
      redisPrefix: options.redisPrefix,
      jwtSecret,
      logDir: outDir,
      keep: options.keep ?? false,
      env: options.serviceEnv,
    });
    log(`service ready at ${service.origin} (database ${new URL(service.databaseUrl).pathname.slice(1)}, prefix ${service.redisPrefix})`);
  }
  const origin = (service?.origin ?? options.url ?? '').replace(/\/$/, '');
  const databaseUrl = service?.databaseUrl ?? options.databaseUrl;

  const items = saleItems(plan.skus, plan.stock, plan.perUserLimit);
  const tokens = new Tokens(jwtSecret, plan.users, `lt${tag}`);
  const mix: TrafficMix = {
    skus: items.map((item) => item.sku).filter((sku) => sku !== SOLD_OUT_SKU),
    hotShare: plan.hotShare,
    repeatShare: REPEAT_SHARE,
    keyedShare: plan.keyedShare,
    maxQuantity: MAX_QUANTITY,
  };
  const soldOutMix: TrafficMix = { ...mix, skus: [SOLD_OUT_SKU], hotShare: 1 };
  const orderPath = `/v1/sales/${saleId}/orders`;
  const phase = (label: string, at: { origin: string; path: string }, traffic: TrafficMix, seconds: number) =>
    runPhase({ label, ...at, connections: plan.connections, durationSeconds: seconds, rate: plan.rate, traffic: new Traffic(traffic, tokens), progress });

  const runs: RunSummary[] = [];
  let checked: { invariants: InvariantResult[]; persistence: LoadResult['persistence'] };
  try {
    try {
      const created = await adminPost(origin, tokens.admin(), '/v1/admin/sales', saleBody(saleId, items, plan.duration + plan.soldOutDuration));
      if (created.status !== 201) throw new Error(`creating sale ${saleId} failed: ${created.status} ${await created.text()}`);
      const probe = await buyProbe(origin, saleId, tokens);
      if (plan.warmup > 0) await warmUp(origin, saleId, items, tokens, (at) => phase('warm-up / reserve', at, mix, plan.warmup));

      const main = await phase(`${plan.scenario} / reserve`, { origin, path: orderPath }, mix, plan.duration);
      runs.push(summarise(plan.scenario, 'reserve', main));
      const soldOut = plan.soldOutDuration > 0 ? await phase('sold-out / reserve', { origin, path: orderPath }, soldOutMix, plan.soldOutDuration) : undefined;
      if (soldOut) runs.push(summarise('sold-out', 'reserve', soldOut));

      log('waiting for Postgres to hold every accepted order, then checking the invariants …');
      checked = await check({ origin, saleId, adminToken: tokens.admin(), databaseUrl, items, phases: [main, soldOut], probe, timeoutSeconds: options.persistTimeoutSeconds ?? 60 });
    } finally {
      // Stopped before the comparisons so they do not share the cores with an idle service; its
      // database stays until the end, as naive-pg keeps its tables there.
      await service?.stop();
    }

    for (const target of plan.compare) {
      log(`starting the ${target} comparison target …`);
      const running = await startTarget(target, { databaseUrl, jwtSecret, items, logDir: outDir });
      try {
        const at = { origin: running.origin, path: running.path ?? orderPath };
        if (plan.warmup > 0) {
          await phase(`warm-up / ${target}`, at, mix, plan.warmup);
          await running.reset();
        }
        runs.push(summarise(plan.scenario, target, await phase(`${plan.scenario} / ${target}`, at, mix, plan.duration)));
        if (target === 'ceiling' && plan.soldOutDuration > 0) {
          runs.push(summarise('sold-out', target, await phase(`sold-out / ${target}`, at, soldOutMix, plan.soldOutDuration)));
        }
      } finally {
        await running.stop();
      }
    }
  } finally {
    await service?.cleanup();
  }

  const files = { json: join(outDir, 'report.json'), html: join(outDir, 'report.html') };
  const result: LoadResult = {
    passed: passed(checked.invariants),
    scenario: plan.scenario,
    saleId,
    origin,
    startedAt,
    plan,
    runs,
    ratios: ratios(runs, plan),
    ...checked,
    files,
  };
  await writeFile(files.json, `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(files.html, renderHtml(result));
  return result;
}

/** Waits for Postgres to catch up, then judges every invariant on what the phases saw. */
async function check(args: {
  readonly origin: string;
  readonly saleId: string;
  readonly adminToken: string;
  readonly databaseUrl: string | undefined;
  readonly items: readonly SaleItemSpec[];
  readonly phases: readonly (PhaseResult | undefined)[];
  readonly probe: AcceptedOrder;
  readonly timeoutSeconds: number;
}): Promise<{ invariants: InvariantResult[]; persistence: LoadResult['persistence'] }> {
  const phases = args.phases.filter((p): p is PhaseResult => p !== undefined);
  const orders = [args.probe, ...phases.flatMap((p) => p.orders)];
  const recorded = await gatherRecorded({
    origin: args.origin,
    saleId: args.saleId,
    adminToken: args.adminToken,
    databaseUrl: args.databaseUrl,
    acceptedIds: new Set(orders.map((order) => order.orderId)),
    timeoutMs: args.timeoutSeconds * 1000,
  });
  const byStatus: Record<string, number> = {};
  for (const p of phases) for (const [status, n] of Object.entries(p.byStatus)) byStatus[status] = (byStatus[status] ?? 0) + n;
  const restocked = (sku: string) => recorded.report?.items.find((entry) => entry.sku === sku)?.restocked ?? 0;
  const invariants = checkInvariants({
    items: args.items.map((item) => truth(item, restocked(item.sku))),
    orders,
    unanswered: phases.flatMap((p) => p.unanswered),
    byStatus,
    report: recorded.report?.items,
    rows: recorded.rows,
    maxQuantity: MAX_QUANTITY,
  });
  const persistence = {
    drained: recorded.drained,
    drainSeconds: recorded.drainSeconds,
    ordersAccepted: recorded.report?.ordersAccepted,
    ordersPersisted: recorded.report?.ordersPersisted,
    report: recorded.report,
  };
  return { invariants, persistence };
}

/** Drives the same traffic at a twin sale with unlimited stock, then lets its orders reach Postgres. */
async function warmUp(
  origin: string,
  saleId: string,
  items: readonly SaleItemSpec[],
  tokens: Tokens,
  drive: (at: { origin: string; path: string }) => Promise<PhaseResult>,
): Promise<void> {
  const warmId = `${saleId}-warm`;
  const body = saleBody(warmId, items.map((item) => ({ ...item, stock: 1_000_000_000, lowStock: undefined })), 3600);
  const created = await adminPost(origin, tokens.admin(), '/v1/admin/sales', body);
  if (created.status !== 201) throw new Error(`creating the warm-up sale failed: ${created.status} ${await created.text()}`);
  await drive({ origin, path: `/v1/sales/${warmId}/orders` });
  await gatherRecorded({ origin, saleId: warmId, adminToken: tokens.admin(), databaseUrl: undefined, acceptedIds: new Set(), timeoutMs: 15_000 });
}

function truth(item: SaleItemSpec, restocked: number): ItemTruth {
  return {
    sku: item.sku,
    initialStock: item.stock,
    restocked,
    perUserLimit: item.perUserLimit,
    lowStockLevel: lowStockLevel(item, restocked),
  };
}
