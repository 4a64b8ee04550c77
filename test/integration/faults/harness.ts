// Fault-injection harness: private Redis and Postgres, the service's roles as real child processes
// (killed with real signals), a concurrent HTTP order driver that records every answer and every
// silence, and the exactly-once check of invariants 3 and 4 (every 201 is one Postgres row, no more).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Role } from '../../../src/config.ts';
import { migrate } from '../../../src/db/migrate.ts';
import { OUTBOX_GROUP } from '../../../src/orders/outbox-persister.ts';
import { shardKeys } from '../../../src/stock/keys.ts';
import { shardKeysOfSale } from '../../support/sale-state.ts';
import { withDatabase } from '../../../tools/databases.ts';
import { compareWithRows, unitsBySku } from '../../../tools/exactly-once.ts';
import { findFreePort } from '../../../tools/free-port.ts';
import { startLocalPostgres, startLocalRedis, type LocalServer } from '../../../tools/local-servers.ts';
import { saleBody, type SaleItemInput } from '../../../tools/sale-body.ts';
import { tokens } from '../../../tools/tokens.ts';
import { TEST_JWT_SECRET } from '../../support/context.ts';

// ---------------------------------------------------------------------------------------------
// Private servers

export interface Stack {
  readonly redis: LocalServer;
  readonly postgres: LocalServer;
  readonly redisUrl: string;
  /** The service's database on the private Postgres (migrated). */
  readonly databaseUrl: string;
  readonly prefix: string;
  readonly secret: string;
  /** The environment every role of this stack runs with, plus overrides. */
  env(overrides?: Readonly<Record<string, string>>): Record<string, string>;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Extra redis-server arguments, e.g. ['--enable-debug-command', 'local'] for DEBUG SLEEP. */
  readonly redisArgs?: readonly string[];
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const [redis, postgres] = await Promise.all([startLocalRedis({ extraArgs: options.redisArgs ?? [] }), startLocalPostgres()]);
  const databaseUrl = withDatabase(postgres.url, 'flashsale');
  await migrate({ databaseUrl, log: () => undefined });
  const prefix = `f${randomBytes(3).toString('hex')}`;
  return {
    redis,
    postgres,
    redisUrl: redis.url,
    databaseUrl,
    prefix,
    secret: TEST_JWT_SECRET,
    env(overrides = {}) {
      return {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        ...(process.env.HOME === undefined ? {} : { HOME: process.env.HOME }),
        ...(process.env.TMPDIR === undefined ? {} : { TMPDIR: process.env.TMPDIR }),
        NODE_ENV: 'test',
        LOG_LEVEL: 'info',
        JWT_SECRET: TEST_JWT_SECRET,
        REDIS_URL: redis.url,
        REDIS_PREFIX: prefix,
        DATABASE_URL: databaseUrl,
        HOST: '127.0.0.1',
        PORT: '0',
        METRICS_PORT: '0',
        RATE_LIMIT_USER_PER_SEC: '0',
        QUEUE_LOCK_DURATION_MS: '2000',
        // These tests are about crashes, not load: shedding on a busy test machine is noise.
        SHED_EVENT_LOOP_DELAY_MS: '0',
        SHUTDOWN_TIMEOUT_MS: '3000',
        // One process per role: a SIGKILL here must hit the process that decides and writes (the
        // default, one API process per core, would kill only the cluster's supervisor; the
        // supervisor's own restarts are tested in api-cluster.test.ts).
        API_PROCESSES: '1',
        ...overrides,
      };
    },
    async stop() {
      await Promise.all([redis.stop(), postgres.stop()]);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The service's roles as child processes

export interface RoleProcess {
  readonly role: Role;
  readonly pid: number;
  /** HTTP port (api / all roles); 0 for a worker. */
  readonly port: number;
  readonly baseUrl: string;
  readonly alive: boolean;
  /** The last lines the process wrote (stdout + stderr), for failure messages. */
  output(): string;
  /** Sends the signal and waits until the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Sends a signal that does not end the process (SIGSTOP, SIGCONT). */
  signal(signal: NodeJS.Signals): void;
}

const spawned = new Set<ChildProcess>();
let exitHookInstalled = false;

/** SIGKILLs every role process this file started and has not seen exit (for afterAll). */
export async function killAllRoles(): Promise<void> {
  await Promise.all(
    [...spawned].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    }),
  );
  spawned.clear();
}

const OUTPUT_LINES = 200;
const REPOSITORY_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface StartRoleOptions {
  /** HTTP port for api/all; default a free one. Reuse it to restart "the same" API. */
  readonly port?: number;
  readonly env?: Readonly<Record<string, string>>;
  readonly readyTimeoutMs?: number;
}

/**
 * `node --import tsx src/main.ts <role>` with the stack's environment; resolves once the process
 * logged "service started" (and, for an HTTP role, /health/ready answered 200).
 */
export async function startRole(stack: Stack, role: Role, options: StartRoleOptions = {}): Promise<RoleProcess> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => spawned.forEach((child) => child.kill('SIGKILL')));
  }
  const serves = role !== 'worker';
  const port = serves ? (options.port ?? (await findFreePort())) : 0;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', role], {
    cwd: REPOSITORY_ROOT,
    env: stack.env({ PORT: String(port), ...options.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.add(child);
  const lines: string[] = [];
  let started = false;
  let partial = '';
  const onData = (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      lines.push(line);
      if (lines.length > OUTPUT_LINES) lines.shift();
      if (line.includes('"msg":"service started"')) started = true;
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => spawned.delete(child));
  const baseUrl = `http://127.0.0.1:${port}`;
  const output = () => [...lines, partial].join('\n');
  const isAlive = () => child.exitCode === null && child.signalCode === null;

  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (!isAlive()) throw new Error(`${role} exited before it was ready (code ${String(child.exitCode)})\n${output()}`);
    if (started && (!serves || (await answers(`${baseUrl}/health/ready`)) === 200)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${role} was not ready within ${options.readyTimeoutMs ?? 30_000} ms\n${output()}`);
    }
    await sleep(50);
  }
  return {
    role,
    pid: child.pid ?? 0,
    port,
    baseUrl,
    get alive() {
      return isAlive();
    },
    output,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!isAlive()) return;
      child.kill(signal);
      await exited;
    },
    signal(signal: NodeJS.Signals) {
      if (isAlive()) child.kill(signal);
    },
  };
}

/** The status of GET url, or undefined when nothing answers. */
export async function answers(url: string, timeoutMs = 2_000): Promise<number | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return undefined;
  }
}

export async function waitForStatus(url: string, status: number, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if ((await answers(url)) === status) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// Sales and orders over HTTP

export async function createSale(baseUrl: string, secret: string, items: SaleItemInput[]): Promise<string> {
  const body = saleBody(items);
  const response = await fetch(`${baseUrl}/v1/admin/sales`, {
    method: 'POST',
    headers: { authorization: tokens(secret).admin(), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (response.status !== 201) throw new Error(`creating the sale answered ${response.status}: ${await response.text()}`);
  return body.id;
}

export interface OrderRequest {
  /** The Idempotency-Key, sent on every attempt of this request. */
  readonly key: string;
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly authorization: string;
}

export type OrderOutcome =
  | { readonly kind: 'accepted'; readonly orderId: string; readonly replayed: boolean }
  | { readonly kind: 'refused'; readonly status: number; readonly code: string }
  /** No HTTP answer. `reached` false: the connection was refused (nothing listened). */
  | { readonly kind: 'no-answer'; readonly reached: boolean; readonly error: string };

let requestCounter = 0;

/** Distinct shoppers (one request each, so per-user limits never refuse), random quantities 1–2. */
export function orderRequests(secret: string, skus: readonly string[], count: number, tag = randomBytes(3).toString('hex')): OrderRequest[] {
  const sign = tokens(secret);
  return Array.from({ length: count }, (_, i) => {
    const userId = `u-${tag}-${++requestCounter}`;
    return {
      key: `k-${tag}-${i}-${randomBytes(4).toString('hex')}`,
      userId,
      sku: skus[i % skus.length] ?? 'missing',
      quantity: 1 + (Math.floor(i / skus.length) % 2),
      authorization: sign.shopper(userId),
    };
  });
}

function errorCode(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = current.cause;
  }
  return error instanceof Error ? error.message : String(error);
}

export async function placeOrder(baseUrl: string, saleId: string, request: OrderRequest, timeoutMs = 15_000): Promise<OrderOutcome> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(`${baseUrl}/v1/sales/${saleId}/orders`, {
      method: 'POST',
      headers: { authorization: request.authorization, 'content-type': 'application/json', 'idempotency-key': request.key },
      body: JSON.stringify({ sku: request.sku, quantity: request.quantity }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await response.text();
  } catch (error) {
    const code = errorCode(error);
    return { kind: 'no-answer', reached: code !== 'ECONNREFUSED', error: code };
  }
  let body: { orderId?: unknown; code?: unknown } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // Not JSON: reported by its text below.
  }
  if (response.status === 201 && typeof body.orderId === 'string') {
    return { kind: 'accepted', orderId: body.orderId, replayed: response.headers.get('idempotent-replayed') === 'true' };
  }
  const code = body.code;
  return { kind: 'refused', status: response.status, code: typeof code === 'string' ? code : text.slice(0, 200) };
}

export interface DriveOptions {
  readonly concurrency: number;
  /** Called after each answer or silence, with how many requests are still in flight. */
  readonly onOutcome?: (request: OrderRequest, outcome: OrderOutcome, inFlight: number) => void;
  /** Stop taking requests from the list once this returns true. */
  readonly stop?: () => boolean;
  /** Pause after each request per lane (paces the flow). */
  readonly pauseMs?: number;
  /**
   * Retries of a request without a final answer (silence, or 503 when the API sheds load on a
   * busy machine), same Idempotency-Key, 250 ms apart — what a storefront client does. Default 0.
   * 40 rides out ~10 s of shedding while a sibling process boots on a two-core machine.
   */
  readonly retries?: number;
}

export interface DriveProgress {
  /** Requests sent and not yet answered (or failed) at this moment. */
  readonly inFlight: number;
}

/** Sends the requests with `concurrency` lanes; resolves with each one's outcome. */
export function drive(
  baseUrl: () => string,
  saleId: string,
  requests: readonly OrderRequest[],
  options: DriveOptions,
): { done: Promise<Map<OrderRequest, OrderOutcome>>; progress: DriveProgress } {
  const outcomes = new Map<OrderRequest, OrderOutcome>();
  let next = 0;
  let inFlight = 0;
  const lane = async () => {
    while (next < requests.length && !(options.stop?.() ?? false)) {
      const request = requests[next++]!;
      inFlight++;
      let outcome = await placeOrder(baseUrl(), saleId, request);
      for (let retry = 0; retry < (options.retries ?? 0) && needsRetry(outcome); retry++) {
        await sleep(250);
        outcome = await placeOrder(baseUrl(), saleId, request);
      }
      inFlight--;
      outcomes.set(request, outcome);
      options.onOutcome?.(request, outcome, inFlight);
      if (options.pauseMs !== undefined) await sleep(options.pauseMs);
    }
  };
  const done = Promise.all(Array.from({ length: options.concurrency }, lane)).then(() => outcomes);
  return {
    done,
    progress: {
      get inFlight() {
        return inFlight;
      },
    },
  };
}

export interface AcceptedOrder {
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly key: string;
}

/** Every 201 seen, by order id; refuses contradictions (one key, two orders). */
export class Ledger {
  readonly accepted = new Map<string, AcceptedOrder>();
  private readonly byKey = new Map<string, string>();
  replayed = 0;
  refused = new Map<string, number>();

  record(request: OrderRequest, outcome: OrderOutcome): void {
    if (outcome.kind === 'refused') this.refused.set(outcome.code, (this.refused.get(outcome.code) ?? 0) + 1);
    if (outcome.kind !== 'accepted') return;
    if (outcome.replayed) this.replayed++;
    const seen = this.byKey.get(request.key);
    if (seen !== undefined && seen !== outcome.orderId) {
      throw new Error(`Idempotency-Key ${request.key} made two orders: ${seen} and ${outcome.orderId}`);
    }
    const owner = this.accepted.get(outcome.orderId);
    if (owner !== undefined && owner.key !== request.key) {
      throw new Error(`order ${outcome.orderId} answered two Idempotency-Keys: ${owner.key} and ${request.key}`);
    }
    this.byKey.set(request.key, outcome.orderId);
    this.accepted.set(outcome.orderId, { userId: request.userId, sku: request.sku, quantity: request.quantity, key: request.key });
  }

  quantityBySku(): Map<string, number> {
    return unitsBySku(this.accepted.values());
  }
}

// ---------------------------------------------------------------------------------------------
// The checks

export interface PersistedReport {
  readonly rows: number;
  /** Milliseconds until Postgres matched. */
  readonly waitedMs: number;
}

/**
 * Polls Postgres until the sale's order ids are exactly the accepted ids (none missing, none
 * extra, each with its quantity) and each item's `sold` is the sum of their quantities.
 */
export async function expectExactlyPersisted(
  databaseUrl: string,
  saleId: string,
  accepted: ReadonlyMap<string, AcceptedOrder>,
  timeoutMs: number,
): Promise<PersistedReport> {
  const started = Date.now();
  let problem = 'not checked yet';
  for (;;) {
    problem = await persistedProblem(databaseUrl, saleId, accepted).catch((error: unknown) => `Postgres: ${String(error)}`);
    if (problem === '') return { rows: accepted.size, waitedMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) throw new Error(`after ${timeoutMs} ms Postgres still does not match the 201s: ${problem}`);
    await sleep(250);
  }
}

async function persistedProblem(databaseUrl: string, saleId: string, accepted: ReadonlyMap<string, AcceptedOrder>): Promise<string> {
  const db = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 2_000 });
  db.on('error', () => undefined);
  await db.connect();
  try {
    const orders = await db.query<{ id: string; userId: string; quantity: number; sku: string }>(
      'SELECT id::text AS id, user_id AS "userId", quantity, sku FROM orders WHERE sale_id = $1',
      [saleId],
    );
    const items = await db.query<{ sku: string; sold: number }>('SELECT sku, sold FROM sale_items WHERE sale_id = $1', [saleId]);
    const { missing, duplicated, mismatched, extra } = compareWithRows(
      [...accepted].map(([id, order]) => ({ id, ...order })),
      orders.rows,
    );
    const expectedSold = unitsBySku(accepted.values());
    const soldProblems = items.rows
      .filter((row) => row.sold !== (expectedSold.get(row.sku) ?? 0))
      .map((row) => `${row.sku}: sold ${row.sold}, 201s sum to ${expectedSold.get(row.sku) ?? 0}`);
    if (missing.length + duplicated.length + mismatched.length + extra.length + soldProblems.length === 0) return '';
    const sample = (ids: readonly string[]) => ids.slice(0, 5).join(', ');
    return [
      `${orders.rows.length} rows for ${accepted.size} accepted orders`,
      missing.length > 0 ? `${missing.length} missing (${sample(missing)})` : '',
      duplicated.length > 0 ? `${duplicated.length} with several rows (${sample(duplicated)})` : '',
      extra.length > 0 ? `${extra.length} without a 201 (${sample(extra.map((row) => row.id))})` : '',
      mismatched.length > 0 ? `${mismatched.length} with another user, sku or quantity (${sample(mismatched)})` : '',
      ...soldProblems,
    ]
      .filter((part) => part !== '')
      .join('; ');
  } finally {
    await db.end().catch(() => undefined);
  }
}

/** Redis `available` of each item of the sale. */
export async function availableInRedis(stack: Stack, saleId: string, skus: readonly string[]): Promise<Map<string, number>> {
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    // The fault tests' items have one stock shard.
    const values = await Promise.all(skus.map((sku) => redis.hget(shardKeys(stack.prefix, saleId, sku, 0).item, 'available')));
    return new Map(skus.map((sku, i) => [sku, Number(values[i])]));
  } finally {
    redis.disconnect();
  }
}

/** How many orders the reserve script accepted for the sale (its `ordersAccepted` counter). */
export async function ordersAcceptedInRedis(stack: Stack, saleId: string): Promise<number> {
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: 1 });
  try {
    const shards = await shardKeysOfSale(redis, stack.prefix, saleId);
    const counts = await Promise.all(shards.map((shard) => redis.hget(shard.sale, 'ordersAccepted')));
    return counts.reduce((sum, count) => sum + Number(count ?? 0), 0);
  } finally {
    redis.disconnect();
  }
}

/** Waits (bounded) until the sale's outbox is empty: a dead persister's entries are claimed once idle. */
export async function outboxDrained(redis: Redis, prefix: string, saleId: string, timeoutMs: number): Promise<{ total: number; length: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await outboxPending(redis, prefix, saleId);
    if ((state.total === 0 && state.length === 0) || Date.now() > deadline) return state;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Pending (read, unacknowledged) entries and length of the sale's outbox streams (one per stock shard), summed. */
export async function outboxPending(redis: Redis, prefix: string, saleId: string): Promise<{ total: number; length: number }> {
  const shards = await shardKeysOfSale(redis, prefix, saleId);
  const states = await Promise.all(
    shards.map(async ({ outbox }) => {
      const [summary, length] = await Promise.all([
        redis.xpending(outbox, OUTBOX_GROUP).catch(() => [0]) as Promise<unknown[]>,
        redis.xlen(outbox),
      ]);
      return { total: Number(summary[0] ?? 0), length };
    }),
  );
  return states.reduce((sum, state) => ({ total: sum.total + state.total, length: sum.length + state.length }), { total: 0, length: 0 });
}

/** No final answer yet: silence, or 503 (shed under load, nothing decided) — the client retries. */
export function needsRetry(outcome: OrderOutcome | undefined): boolean {
  return outcome === undefined || outcome.kind === 'no-answer' || (outcome.kind === 'refused' && outcome.status === 503);
}

export function summarise(outcomes: Iterable<OrderOutcome>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const outcome of outcomes) {
    const label =
      outcome.kind === 'accepted'
        ? outcome.replayed
          ? 'replayed'
          : 'accepted'
        : outcome.kind === 'refused'
          ? `refused:${outcome.code}`
          : `no-answer:${outcome.reached ? 'in-flight' : 'refused-connection'}`;
    counts[label] = (counts[label] ?? 0) + 1;
  }
  return counts;
}
