// The four things `npm run bench` drives, each a process of its own on 127.0.0.1, all started
// once and kept running across reps (idle targets cost nothing measurable):
//   bare      a bare Fastify POST route that parses the same JSON body (load-tests' ceiling app)
//   in-stock  the real service, an item that never sells out: every attempt makes an order
//   sold-out  the same service, an item of stock 1 sold once: every attempt is a 409 SOLD_OUT
//   naive-pg  one Postgres transaction per attempt (load-tests' naive design), huge stock
import { randomBytes } from 'node:crypto';
import { createDatabase, dropDatabase } from '../tools/databases.ts';
import { tokens } from '../tools/tokens.ts';
import { startTarget, type RunningTarget } from '../load-tests/compare.ts';
import { startServiceProcess, type StartedService } from '../load-tests/service-process.ts';
import { pidListeningOn } from './proc-cpu.ts';

export type TargetName = 'bare' | 'in-stock' | 'sold-out' | 'naive-pg';
export const TARGET_NAMES: readonly TargetName[] = ['bare', 'in-stock', 'sold-out', 'naive-pg'];

export const ORDER_BODY = JSON.stringify({ sku: 'item', quantity: 1 });
const IN_STOCK_SALE = 'bench-in-stock';
const SOLD_OUT_SALE = 'bench-sold-out';

export interface Target {
  readonly name: TargetName;
  readonly url: string;
  readonly path: string;
  /** The process that answers (and its descendants): the app, or the service. */
  readonly appPid: number;
  /** The status every answer should have. */
  readonly expectedStatus: 201 | 409 | 200;
  /** In-stock only: accepted orders (Redis) and rows in Postgres for its sale. */
  readonly persistence?: () => Promise<{ readonly accepted: number; readonly persisted: number }>;
}

export interface Targets {
  readonly byName: ReadonlyMap<TargetName, Target>;
  readonly service: StartedService;
  stop(): Promise<void>;
}

export interface TargetOptions {
  readonly redisUrl: string;
  /** A Postgres server URL: fresh databases are created on it and dropped afterwards. */
  readonly postgresUrl: string;
  readonly jwtSecret: string;
  readonly logDir: string;
  /** Extra service settings on top of the production defaults (tests turn shedding off). */
  readonly serviceEnv: Readonly<Record<string, string>>;
}

function portOf(origin: string): number {
  return Number(new URL(origin).port);
}

function listenerPid(name: string, origin: string): number {
  const pid = pidListeningOn(portOf(origin));
  if (pid === undefined) throw new Error(`no process found listening for ${name} at ${origin}`);
  return pid;
}

/** An operator's bearer token, without the "Bearer " the api() helper adds. */
export function adminSigner(secret: string): () => string {
  const minted = tokens(secret);
  return () => withoutScheme(minted.admin('bench-operator'));
}

const withoutScheme = (authorization: string) => authorization.replace(/^Bearer /, '');

async function api(origin: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${origin}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

/** Creates a sale of one item `item` through the admin API, open from now for two hours. */
export async function createSale(
  origin: string,
  adminToken: string,
  sale: { readonly id: string; readonly stock: number; readonly perUserLimit: number; readonly paymentWindowSeconds: number },
): Promise<void> {
  const now = Date.now();
  const created = await api(origin, adminToken, 'POST', '/v1/admin/sales', {
    id: sale.id,
    name: sale.id,
    currency: 'CNY',
    paymentWindowSeconds: sale.paymentWindowSeconds,
    startsAt: new Date(now - 1_000).toISOString(),
    endsAt: new Date(now + 2 * 3_600_000).toISOString(),
    items: [{ sku: 'item', name: 'Bench item', unitPrice: 100, stock: sale.stock, perUserLimit: sale.perUserLimit }],
  });
  if (created.status !== 201) throw new Error(`creating sale ${sale.id} answered ${created.status}: ${JSON.stringify(created.json)}`);
}

/** The service with production defaults: NODE_ENV=production, per-user rate limit at its default, shedding, metrics, auth. */
export function startBenchService(options: TargetOptions): Promise<StartedService> {
  return startServiceProcess({
    redisUrl: options.redisUrl,
    databaseUrl: options.postgresUrl,
    freshDatabase: true,
    redisPrefix: undefined,
    jwtSecret: options.jwtSecret,
    logDir: options.logDir,
    keep: false,
    // An empty value means "not set": the kit turns the per-user limit off by default, the bench keeps its default on.
    env: { RATE_LIMIT_USER_PER_SEC: '', ...options.serviceEnv },
  });
}

export async function startTargets(options: TargetOptions): Promise<Targets> {
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((error: unknown) => console.error(`bench: cleanup failed: ${String(error)}`));
  };
  try {
    const adminToken = adminSigner(options.jwtSecret)();
    const service = await startBenchService(options);
    stops.push(async () => {
      await service.stop();
      await service.cleanup();
    });
    await createSale(service.origin, adminToken, { id: IN_STOCK_SALE, stock: 1_000_000_000, perUserLimit: 10_000, paymentWindowSeconds: 3_600 });
    await createSale(service.origin, adminToken, { id: SOLD_OUT_SALE, stock: 1, perUserLimit: 1, paymentWindowSeconds: 3_600 });
    const buyer = withoutScheme(tokens(options.jwtSecret).shopper('bench-first-buyer'));
    const sold = await api(service.origin, buyer, 'POST', `/v1/sales/${SOLD_OUT_SALE}/orders`, JSON.parse(ORDER_BODY));
    if (sold.status !== 201) throw new Error(`selling the sold-out item's only unit answered ${sold.status}`);
    const servicePid = listenerPid('the service', service.origin);

    const naiveDatabase = `bench_naive_${randomBytes(4).toString('hex')}`;
    const naiveUrl = await createDatabase(options.postgresUrl, naiveDatabase);
    stops.push(() => dropDatabase(naiveUrl));
    const compareOptions = {
      databaseUrl: naiveUrl,
      jwtSecret: options.jwtSecret,
      items: [{ sku: 'item', stock: 1_000_000_000, perUserLimit: 10_000, lowStock: undefined }],
      logDir: options.logDir,
    };
    const naive: RunningTarget = await startTarget('naive-pg', compareOptions);
    stops.push(() => naive.stop());
    const bare: RunningTarget = await startTarget('ceiling', compareOptions);
    stops.push(() => bare.stop());

    const report = async () => {
      const answer = await api(service.origin, adminToken, 'GET', `/v1/admin/sales/${IN_STOCK_SALE}/report`);
      const body = answer.json as { ordersAccepted?: number; ordersPersisted?: number };
      if (answer.status !== 200 || typeof body.ordersAccepted !== 'number' || typeof body.ordersPersisted !== 'number') {
        throw new Error(`the in-stock sale's report answered ${answer.status}: ${JSON.stringify(answer.json)}`);
      }
      return { accepted: body.ordersAccepted, persisted: body.ordersPersisted };
    };
    const targets: Target[] = [
      { name: 'bare', url: bare.origin, path: bare.path ?? '/ceiling', appPid: listenerPid('the bare route', bare.origin), expectedStatus: 200 },
      { name: 'in-stock', url: service.origin, path: `/v1/sales/${IN_STOCK_SALE}/orders`, appPid: servicePid, expectedStatus: 201, persistence: report },
      { name: 'sold-out', url: service.origin, path: `/v1/sales/${SOLD_OUT_SALE}/orders`, appPid: servicePid, expectedStatus: 409 },
      { name: 'naive-pg', url: naive.origin, path: `/v1/sales/${IN_STOCK_SALE}/orders`, appPid: listenerPid('the naive design', naive.origin), expectedStatus: 201 },
    ];
    return { byName: new Map(targets.map((target) => [target.name, target])), service, stop: stopAll };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
