// runLoad: one load test end to end — start (or reach) the service, create the sale, drive the
// scenario and a sold-out phase, check the invariants, drive the comparison targets one at a time,
// and write report.json and report.html. Used by the CLI (cli.ts) and by `npm run demo`.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { databaseName } from '../tools/databases.ts';
import { startTarget } from './compare.ts';
import { runPhase, type PhaseResult, type Progress } from './driver.ts';
import { gatherRecorded } from './evidence.ts';
import { checkInvariants, passed, type InvariantResult, type ItemTruth } from './invariants.ts';
import { resolvePlan, type PlanOptions } from './plan.ts';
import type { AcceptedOrder } from './recorder.ts';
import { renderHtml } from './report-html.ts';
import { ratios, summarise, type LoadResult, type Persistence, type RunSummary } from './result.ts';
import { SaleClient } from './sale-client.ts';
import {
  loadSaleBody,
  lowStockLevel,
  MAX_QUANTITY,
  REPEAT_SHARE,
  saleItems,
  Shoppers,
  SOLD_OUT_SKU,
  Traffic,
  type SaleItemSpec,
  type TrafficMix,
} from './scenarios.ts';
import { startServiceProcess, type StartedService } from './service-process.ts';

/** The service's own default secret in development, for --url runs that name none. */
const DEVELOPMENT_JWT_SECRET = 'development-only-secret-do-not-use';

export interface LoadOptions extends PlanOptions {
  /** An already running service; otherwise the kit starts one (and stops it afterwards). */
  readonly url?: string;
  readonly redisUrl?: string;
  /** The service's database: where the invariants read `orders` (and naive-pg keeps its tables). */
  readonly databaseUrl?: string;
  /** Starting the service: create a fresh database on databaseUrl's server (default true). */
  readonly freshDatabase?: boolean;
  /** Starting the service: its REDIS_PREFIX (default: a fresh one). */
  readonly redisPrefix?: string;
  readonly outDir?: string;
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

/** Buys the one unit of the probe SKU, so the sold-out phase meets a sold-out item. */
const buyProbe = (client: SaleClient, saleId: string) => client.buy(saleId, 'load-test-probe', SOLD_OUT_SKU, 1);

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
    if (!options.redisUrl || !options.databaseUrl) throw new Error('without url, runLoad needs redisUrl and databaseUrl (the CLI and the demo find them with tools/services.ts)');
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
    log(`service ready at ${service.origin} (database ${databaseName(service.databaseUrl)}, prefix ${service.redisPrefix})`);
  }
  const origin = (service?.origin ?? options.url ?? '').replace(/\/$/, '');
  const databaseUrl = service?.databaseUrl ?? options.databaseUrl;

  const items = saleItems(plan.skus, plan.stock, plan.perUserLimit);
  const shoppers = new Shoppers(jwtSecret, plan.users, `lt${tag}`);
  const client = new SaleClient(origin, shoppers.tokens);
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
    runPhase({ label, ...at, connections: plan.connections, durationSeconds: seconds, rate: plan.rate, traffic: new Traffic(traffic, shoppers), progress });

  const runs: RunSummary[] = [];
  let checked: { invariants: InvariantResult[]; persistence: Persistence };
  try {
    try {
      await client.createSale(loadSaleBody(saleId, items, plan.duration + plan.soldOutDuration));
      const probe = await buyProbe(client, saleId);
      if (plan.warmup > 0) await warmUp(client, origin, saleId, items, (at) => phase('warm-up / reserve', at, mix, plan.warmup));

      const main = await phase(`${plan.scenario} / reserve`, { origin, path: orderPath }, mix, plan.duration);
      runs.push(summarise(plan.scenario, 'reserve', main));
      const soldOut = plan.soldOutDuration > 0 ? await phase('sold-out / reserve', { origin, path: orderPath }, soldOutMix, plan.soldOutDuration) : undefined;
      if (soldOut) runs.push(summarise('sold-out', 'reserve', soldOut));

      log('waiting for Postgres to hold every accepted order, then checking the invariants …');
      checked = await check({ origin, saleId, adminToken: client.adminToken, databaseUrl, items, phases: [main, soldOut], probe, timeoutSeconds: options.persistTimeoutSeconds ?? 60 });
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
}): Promise<{ invariants: InvariantResult[]; persistence: Persistence }> {
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
  client: SaleClient,
  origin: string,
  saleId: string,
  items: readonly SaleItemSpec[],
  drive: (at: { origin: string; path: string }) => Promise<PhaseResult>,
): Promise<void> {
  const warmId = `${saleId}-warm`;
  await client.createSale(loadSaleBody(warmId, items.map((item) => ({ ...item, stock: 1_000_000_000, lowStock: undefined })), 3600));
  await drive({ origin, path: `/v1/sales/${warmId}/orders` });
  await gatherRecorded({ origin, saleId: warmId, adminToken: client.adminToken, databaseUrl: undefined, acceptedIds: new Set(), timeoutMs: 15_000 });
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
