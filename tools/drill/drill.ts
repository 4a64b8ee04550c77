// One drill run: the clock and timeline a scenario writes to, the private stack it rushes (the fault
// harness's redis-server + postgres + the service's roles as real processes), and the closing
// verdict — every invariant through Postgres — folded into a DrillReport whatever happened.
import {
  createSale,
  killAllRoles,
  startRole,
  startStack,
  type RoleProcess,
  type Stack,
  type StackOptions,
} from '../../test/integration/faults/harness.ts';
import { checkInvariants, type InvariantResult } from './invariants.ts';
import { verdict, type Check, type DrillReport, type TimelineEvent } from './report.ts';
import { Rush, type RushOptions } from './rush.ts';

export interface DrillOptions {
  readonly log: (line: string) => void;
  /** redis-restart: the AOF fsync policy rehearsed (default always). */
  readonly appendfsync?: 'always' | 'everysec';
}

export interface Scenario {
  readonly name: string;
  /** One line for --help and docs. */
  readonly summary: string;
  run(options: DrillOptions): Promise<DrillReport>;
}

export const SKUS = ['phone', 'tablet'] as const;
/** Large enough that a rush never sells out: refusals in the report are the fault's, not the stock's. */
const STOCK_PER_SKU = 100_000;
const PER_USER_LIMIT = 2;
/** The items of every drill's sale. */
export const DRILL_ITEMS = SKUS.map((sku) => ({ sku, stock: STOCK_PER_SKU, perUserLimit: PER_USER_LIMIT }));
/** A role process may take long to boot (tsx) on a busy two-core machine; the harness's 30 s is too tight there. */
export const ROLE_READY_MS = 90_000;

export class Drill {
  readonly startedAt = new Date();
  readonly timeline: TimelineEvent[] = [];
  readonly figures: Record<string, number | string> = {};
  readonly checks: Check[] = [];
  fault = '';
  recoveryMs: number | null = null;
  recoveryMeaning = '';
  rush: Rush | undefined;
  accepted = 0;
  lost = 0;
  lossWindow: number | undefined;
  readonly #t0 = performance.now();
  readonly #cleanups: (() => Promise<unknown>)[] = [];

  constructor(
    readonly scenario: string,
    readonly log: (line: string) => void,
  ) {}

  /** Milliseconds since the drill started. */
  now(): number {
    return Math.round(performance.now() - this.#t0);
  }

  event(text: string): number {
    const atMs = this.now();
    this.timeline.push({ atMs, event: text });
    this.log(`[${this.scenario}] t+${atMs} ms ${text}`);
    return atMs;
  }

  check(name: string, ok: boolean, detail: string): void {
    this.checks.push({ name, ok, detail });
  }

  /** Runs at the end of the drill, last registered first, whatever happened. */
  onCleanup(cleanup: () => Promise<unknown>): void {
    this.#cleanups.push(cleanup);
  }

  async cleanup(): Promise<void> {
    for (const cleanup of this.#cleanups.reverse()) await cleanup().catch((error: unknown) => this.log(`[${this.scenario}] cleanup failed: ${String(error)}`));
    this.#cleanups.length = 0;
  }

  report(error?: unknown): DrillReport {
    const base = {
      scenario: this.scenario,
      startedAt: this.startedAt.toISOString(),
      durationMs: this.now(),
      fault: this.fault,
      timeline: this.timeline,
      recoveryMs: this.recoveryMs,
      recoveryMeaning: this.recoveryMeaning,
      answers: this.rush?.answersByPhase() ?? {},
      accepted: this.accepted,
      lost: this.lost,
      ...(this.lossWindow === undefined ? {} : { lossWindow: this.lossWindow }),
      checks: this.checks,
      figures: this.figures,
      ...(error === undefined ? {} : { error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    };
    return { ...base, status: verdict(base) };
  }
}

/** Runs `work` as the drill `scenario`; always cleans up and returns a report (failed when work threw). */
export async function runDrill(scenario: string, options: DrillOptions, work: (drill: Drill) => Promise<void>): Promise<DrillReport> {
  const drill = new Drill(scenario, options.log);
  let error: unknown;
  try {
    await work(drill);
  } catch (caught) {
    error = caught;
    drill.event(`drill aborted: ${caught instanceof Error ? caught.message.split('\n')[0] : String(caught)}`);
  } finally {
    await drill.rush?.stop().catch(() => undefined);
    await drill.cleanup();
  }
  return drill.report(error);
}

export interface DrillStack {
  readonly stack: Stack;
  api: RoleProcess;
  worker: RoleProcess;
  readonly saleId: string;
}

/** Private redis-server and postgres, an api and a worker process, and a live sale of SKUS. */
export async function startDrillStack(
  drill: Drill,
  options: StackOptions & {
    readonly roleEnv?: Readonly<Record<string, string>>;
    /** Fields of the sale's body (tools/sale-body.ts), e.g. a short paymentWindowSeconds. */
    readonly sale?: Record<string, unknown>;
  } = {},
): Promise<DrillStack> {
  const stack = await startStack(options);
  drill.onCleanup(() => stack.stop());
  // Every role process the harness started (restarted ones too) is SIGKILLed before the servers stop.
  drill.onCleanup(() => killAllRoles());
  const env = options.roleEnv ?? {};
  const [api, worker] = await Promise.all([
    startRole(stack, 'api', { env, readyTimeoutMs: ROLE_READY_MS }),
    startRole(stack, 'worker', { env, readyTimeoutMs: ROLE_READY_MS }),
  ]);
  const saleId = await createSale(api.baseUrl, stack.secret, [...DRILL_ITEMS], options.sale);
  drill.event(`private redis-server :${stack.redis.port} and postgres :${stack.postgres.port}, api pid ${api.pid}, worker pid ${worker.pid}; sale ${saleId}`);
  return { stack, api, worker, saleId };
}

/** Starts the rush on the stack's API (whichever process serves it at the moment). */
export function startRush(drill: Drill, stack: DrillStack, options: Partial<RushOptions> = {}): Rush {
  const rush = new Rush(() => stack.api.baseUrl, stack.saleId, stack.stack.secret, () => drill.now(), { skus: SKUS, ...options });
  drill.rush = rush;
  rush.start();
  drill.event('rush started');
  return rush;
}

/**
 * Stops the rush (every request in flight gets its final answer), then checks every invariant
 * through Postgres, waiting up to timeoutMs for the persister to drain what the fault left.
 */
export async function finish(
  drill: Drill,
  stack: DrillStack,
  timeoutMs = 30_000,
  mayBeMissing?: ReadonlySet<string>,
): Promise<InvariantResult> {
  const rush = drill.rush;
  if (rush === undefined) throw new Error('finish() without a rush');
  await rush.stop();
  drill.event(`rush stopped: ${rush.ledger.accepted.size} orders accepted, ${rush.attempts.length} attempts`);
  drill.check(
    'every request got a final answer (retried with its key)',
    rush.unanswered.length === 0,
    `${rush.unanswered.length} still without one after their retries`,
  );
  const result = await checkInvariants({
    databaseUrl: stack.stack.databaseUrl,
    apiBaseUrl: stack.api.baseUrl,
    secret: stack.stack.secret,
    saleId: stack.saleId,
    accepted: rush.ledger.accepted,
    timeoutMs,
    ...(mayBeMissing === undefined ? {} : { mayBeMissing }),
  });
  drill.event(`invariants checked through Postgres (${result.rows} rows, settled after ${result.settledMs} ms)`);
  drill.checks.push(...result.checks);
  drill.accepted = rush.ledger.accepted.size;
  drill.lost = result.lost;
  for (const [role, process] of [['API', stack.api], ['worker', stack.worker]] as const) {
    const errors = errorLines(process.output());
    drill.figures[`${role} error log lines (of its last 200)`] = errors.length;
    if (errors.length > 0) drill.figures[`${role} errors, first`] = errors.slice(0, 3).join(' | ');
  }
  drill.figures['replayed 201s (retries of cut requests)'] = rush.ledger.replayed;
  for (const [phase, ms] of Object.entries(rush.slowestByPhase())) drill.figures[`slowest answer, ${phase} (ms)`] = ms;
  drill.figures['Postgres settled after the rush (ms)'] = result.settledMs;
  return result;
}

/** The service's error-level (pino level ≥ 50) log lines, each as "msg: err.message". */
function errorLines(output: string): string[] {
  return output.split('\n').flatMap((line) => {
    if (!line.startsWith('{')) return [];
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string; type?: string } };
      if ((entry.level ?? 0) < 50) return [];
      return [`${entry.msg ?? ''}${entry.err === undefined ? '' : `: ${entry.err.type ?? ''} ${entry.err.message ?? ''}`}`.slice(0, 300)];
    } catch {
      return [];
    }
  });
}
