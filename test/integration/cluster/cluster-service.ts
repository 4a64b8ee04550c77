// What the acceptance tests on a real Redis Cluster share: the service as real processes (one API
// process, one worker process) on the cluster, keyed order attempts over HTTP, where an item's
// stock shards live (slot, master), and the invariants judged through Postgres once every accepted
// order has been persisted.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { shardTag, tagHex } from '../../../src/stock/keys.ts';
import { compareWithRows, type ExactlyOnce, type OrderFacts } from '../../../tools/exactly-once.ts';
import { findFreePort } from '../../../tools/free-port.ts';
import { masterForSlot, slotOf, SLOT_COUNT, type ClusterNode, type RedisCluster } from '../../../tools/redis-cluster.ts';
import { tokens } from '../../../tools/tokens.ts';
import type { TestContext } from '../../support/context.ts';
import { hasExited, serviceEnvironment, spawnService, terminate, waitFor200 } from '../../support/service-process.ts';

export interface ServiceProcesses {
  /** http://127.0.0.1:PORT of the API process. */
  readonly origin: string;
  readonly api: ChildProcess;
  /** Undefined when started without one (`withWorker: false`). */
  readonly worker: ChildProcess | undefined;
  /** SIGTERM to both, waiting for their exits (SIGKILL after 15 s). */
  stop(): Promise<void>;
}

/** `src/main.ts api` and (unless `withWorker` is false) `src/main.ts worker` on the cluster, this file's database and namespace, `env` on top. */
export async function startServiceProcesses(ctx: TestContext, cluster: RedisCluster, env: Record<string, string> = {}, withWorker = true): Promise<ServiceProcesses> {
  const [port, apiMetrics, workerMetrics] = [await findFreePort(), await findFreePort(), await findFreePort()];
  const common = {
    REDIS_CLUSTER_NODES: cluster.seedNodes,
    API_PROCESSES: '1',
    RATE_LIMIT_USER_PER_SEC: '0',
    SHUTDOWN_TIMEOUT_MS: '5000',
    ...env,
  };
  const api = spawnService(['--import', 'tsx', 'src/main.ts', 'api'], serviceEnvironment(ctx, { ...common, PORT: String(port), METRICS_PORT: String(apiMetrics) }));
  const worker = withWorker
    ? spawnService(['--import', 'tsx', 'src/main.ts', 'worker'], serviceEnvironment(ctx, { ...common, METRICS_PORT: String(workerMetrics) }))
    : undefined;
  const stop = async () => {
    await Promise.all(
      [api, ...(worker ? [worker] : [])].map(async (child) => {
        if (hasExited(child)) return;
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await terminate(child);
        clearTimeout(killer);
      }),
    );
  };
  try {
    const origin = `http://127.0.0.1:${port}`;
    await Promise.all([waitFor200(`${origin}/health/ready`, 40_000), ...(withWorker ? [waitFor200(`http://127.0.0.1:${workerMetrics}/metrics`, 40_000)] : [])]);
    return { origin, api, worker, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface Reply {
  readonly status: number;
  readonly json: Record<string, unknown>;
  readonly retryAfter: string | undefined;
  /** performance.now() when sent and when the answer was in. */
  readonly sentAt: number;
  readonly answeredAt: number;
}

/** One HTTP call to the service; a connection error is status 0 (the test decides what that means). */
export async function call(origin: string, method: string, path: string, options: { auth?: string; body?: unknown; key?: string } = {}): Promise<Reply> {
  const sentAt = performance.now();
  try {
    const response = await fetch(`${origin}${path}`, {
      method,
      headers: {
        ...(options.auth !== undefined && { authorization: options.auth }),
        ...(options.key !== undefined && { 'idempotency-key': options.key }),
        ...(options.body !== undefined && { 'content-type': 'application/json' }),
      },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await response.text();
    const json = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>;
    return { status: response.status, json, retryAfter: response.headers.get('retry-after') ?? undefined, sentAt, answeredAt: performance.now() };
  } catch (err) {
    return { status: 0, json: { code: `FETCH_FAILED ${String(err)}` }, retryAfter: undefined, sentAt, answeredAt: performance.now() };
  }
}

/** Shopper and operator tokens, each shopper's signed once (signing per request would load the test process). */
export function tokenCache(secret: string): { shopper(userId: string): string; admin(): string } {
  const raw = tokens(secret);
  const shoppers = new Map<string, string>();
  const admin = raw.admin();
  return {
    shopper: (userId) => {
      let token = shoppers.get(userId);
      if (token === undefined) shoppers.set(userId, (token = raw.shopper(userId)));
      return token;
    },
    admin: () => admin,
  };
}

export interface Attempt {
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly key: string;
}

export interface Outcome {
  readonly attempt: Attempt;
  readonly reply: Reply;
  readonly code: string | undefined;
  /** The order's facts when the answer was a 201. */
  readonly order: OrderFacts | undefined;
}

export async function orderAttempt(origin: string, auth: ReturnType<typeof tokenCache>, saleId: string, attempt: Attempt): Promise<Outcome> {
  const reply = await call(origin, 'POST', `/v1/sales/${saleId}/orders`, {
    auth: auth.shopper(attempt.userId),
    key: attempt.key,
    body: { sku: attempt.sku, quantity: attempt.quantity },
  });
  const code = typeof reply.json.code === 'string' ? reply.json.code : undefined;
  const order =
    reply.status === 201 ? { id: String(reply.json.orderId), userId: attempt.userId, sku: attempt.sku, quantity: attempt.quantity } : undefined;
  return { attempt, reply, code, order };
}

/** The hash slot of one stock shard of an item (layout 2: its own tag `{s<T>}`). */
export function shardSlot(saleId: string, sku: string, shard: number): number {
  return slotOf(`{s${tagHex(shardTag(saleId, sku, shard))}}`);
}

/** The master serving each of an item's shards, in shard order. */
export async function shardMasters(cluster: RedisCluster, saleId: string, sku: string, shards: number): Promise<ClusterNode[]> {
  const masters: ClusterNode[] = [];
  for (let k = 0; k < shards; k++) masters.push(await masterForSlot(cluster, shardSlot(saleId, sku, k)));
  return masters;
}

/** The first slot of each master's range as `redis-cli --cluster create` splits 16384 slots (its rounding). */
function createdRangeStarts(masters: number): number[] {
  const per = SLOT_COUNT / masters;
  return Array.from({ length: masters }, (_, i) => (i === 0 ? 0 : Math.round(per * i - 1) + 1));
}

/** Which master (0-based, in creation order) a fresh cluster gives `slot`, and how far into its range it is. */
function createdPlace(slot: number, masters: number): { master: number; offset: number } {
  const starts = createdRangeStarts(masters);
  const master = starts.findLastIndex((start) => slot >= start);
  return { master, offset: slot - starts[master]! };
}

/**
 * The first SKU `<stem>-<n>` whose `shards` shards sit on at least two masters of a freshly created
 * cluster and whose shard 0's slot is among the `lowWithin` lowest of its master's:
 * `redis-cli --cluster reshard` moves a master's lowest slots first, so moving that few slots moves
 * shard 0. Deterministic: the same sale id always gives the same SKU.
 */
export function pickHotSku(saleId: string, stem: string, shards: number, masters: number, lowWithin: number): string {
  for (let n = 0; n < 1_000_000; n++) {
    const sku = `${stem}-${n}`;
    const places = Array.from({ length: shards }, (_, k) => createdPlace(shardSlot(saleId, sku, k), masters));
    const spread = new Set(places.map((p) => p.master)).size;
    if (spread >= Math.min(2, masters) && places[0]!.offset < lowWithin) return sku;
  }
  throw new Error(`no SKU ${stem}-<n> fits`);
}

export interface Row extends OrderFacts {
  readonly status: string;
}

export async function orderRows(db: pg.Client, saleId: string): Promise<Row[]> {
  return (
    await db.query<Row>('SELECT id, user_id AS "userId", sku, quantity, status FROM orders WHERE sale_id = $1', [saleId])
  ).rows;
}

/** Polls until `check` is true or `timeoutMs` passed; whether it became true. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve().then(check).catch(() => false)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

export interface ItemReport {
  readonly sku: string;
  readonly initialStock: number;
  readonly restocked: number;
  readonly available: number;
  readonly reserved: number;
  readonly paid: number;
}

export interface SaleReport {
  readonly ordersAccepted: number;
  readonly ordersPersisted: number;
  readonly items: readonly ItemReport[];
}

export async function saleReport(origin: string, auth: ReturnType<typeof tokenCache>, saleId: string): Promise<SaleReport> {
  const reply = await call(origin, 'GET', `/v1/admin/sales/${saleId}/report`, { auth: auth.admin() });
  if (reply.status !== 200) throw new Error(`report of ${saleId} answered ${reply.status}: ${JSON.stringify(reply.json)}`);
  return reply.json as unknown as SaleReport;
}

export interface Invariants {
  readonly exactlyOnce: ExactlyOnce;
  /** Per SKU where Postgres's live units differ from the stock taken (total − available), described. */
  readonly stockTaken: string[];
  /** Users whose live units of a SKU exceed its per-user limit, described. */
  readonly overLimit: string[];
}

/**
 * DESIGN.md's invariants through Postgres: every 201 one row (tools/exactly-once.ts), each item's
 * live units (pending_payment + paid) equal to the stock the report says was taken, and no user
 * over an item's limit. Call once Postgres has caught up and nothing is in flight.
 */
export function judge(accepted: readonly OrderFacts[], rows: readonly Row[], report: SaleReport, limits: ReadonlyMap<string, number>): Invariants {
  const live = rows.filter((row) => row.status === 'pending_payment' || row.status === 'paid');
  const stockTaken: string[] = [];
  for (const item of report.items) {
    const units = live.filter((row) => row.sku === item.sku).reduce((sum, row) => sum + row.quantity, 0);
    const taken = item.initialStock + item.restocked - item.available;
    if (units !== taken) stockTaken.push(`${item.sku}: ${units} live units in Postgres, ${taken} taken from stock`);
  }
  const perUser = new Map<string, number>();
  for (const row of live) perUser.set(`${row.sku}|${row.userId}`, (perUser.get(`${row.sku}|${row.userId}`) ?? 0) + row.quantity);
  const overLimit = [...perUser].filter(([key, units]) => units > (limits.get(key.split('|')[0]!) ?? Infinity)).map(([key, units]) => `${key}: ${units}`);
  return { exactlyOnce: compareWithRows(accepted, rows), stockTaken, overLimit };
}

/** "201: 812, 409 SOLD_OUT: 40, …" of a list of outcomes. */
export function tally(outcomes: readonly Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { reply, code } of outcomes) {
    const label = reply.status === 201 ? '201' : `${reply.status} ${code ?? ''}`.trim();
    counts[label] = (counts[label] ?? 0) + 1;
  }
  return counts;
}

const RUSH_RETRIES = 3;

/**
 * A follow-up call (pay, cancel) as a client makes it: a 503 (failing over, slot moving) is sent
 * again after a pause, up to 5 times; the last reply is returned.
 */
export async function withRetries(send: () => Promise<Reply>): Promise<Reply> {
  let reply = await send();
  for (let retry = 0; retry < 5 && reply.status === 503; retry++) {
    await sleep(300);
    reply = await send();
  }
  return reply;
}

export interface Rush {
  /** Every outcome so far, in the order answered. */
  readonly outcomes: Outcome[];
  /** Ends the rush: each shopper loop finishes its current attempt (and its follow-up) and stops. */
  stop(): Promise<Outcome[]>;
}

/**
 * `concurrency` shopper loops, each on connections of its own, making attempts back to back:
 * `next(n)` says the n-th attempt (undefined: that loop stops), a 503 is retried with its key (up
 * to 3 times, every answer recorded), `then` runs after the last answer (paying or cancelling,
 * say) before the loop's next attempt.
 */
export function startRush(options: {
  origin: string;
  auth: ReturnType<typeof tokenCache>;
  saleId: string;
  concurrency: number;
  next: (n: number) => Attempt | undefined;
  then?: (outcome: Outcome) => Promise<void>;
}): Rush {
  const outcomes: Outcome[] = [];
  let rushing = true;
  let started = 0;
  const loops = Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (rushing) {
        const attempt = options.next(started++);
        if (attempt === undefined) return;
        let outcome = await orderAttempt(options.origin, options.auth, options.saleId, attempt);
        outcomes.push(outcome);
        // As a client does: a 503 is retried with the same key after Retry-After (capped at 1 s here).
        for (let retry = 0; retry < RUSH_RETRIES && outcome.reply.status === 503 && rushing; retry++) {
          await sleep(Math.min(1_000, 1_000 * Number(outcome.reply.retryAfter ?? 1)));
          outcome = await orderAttempt(options.origin, options.auth, options.saleId, attempt);
          outcomes.push(outcome);
        }
        await options.then?.(outcome);
      }
    }),
  );
  return {
    outcomes,
    async stop() {
      rushing = false;
      await loops;
      return outcomes;
    },
  };
}
