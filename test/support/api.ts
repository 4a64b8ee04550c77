// Helpers for HTTP tests: a running API on this file's database and namespace, signed tokens,
// a sale body builder, and testApi(), a per-file fixture bundling them with Redis and Postgres.
import type { AddressInfo } from 'node:net';
import { createSigner } from 'fast-jwt';
import { Redis } from 'ioredis';
import pg from 'pg';
import { expect } from 'vitest';
import type { Role } from '../../src/config.ts';
import type { App } from '../../src/http/app.ts';
import { createLogger } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/service.ts';
import { createTestContext, type TestContext } from './context.ts';
import { saleState, type SaleState } from './sale-state.ts';

/** A service of `role` on this file's database and namespace, per-user rate limit off. */
export async function startTestService(ctx: TestContext, role: Role, overrides: Record<string, string> = {}): Promise<RunningService> {
  const config = ctx.configWith({ RATE_LIMIT_USER_PER_SEC: '0', ...overrides });
  return startService(config, createLogger(config), role);
}

/** The API role alone (see startTestService). */
export async function startTestApi(ctx: TestContext, overrides: Record<string, string> = {}): Promise<RunningService> {
  return startTestService(ctx, 'api', overrides);
}

export type Tokens = ReturnType<typeof tokens>;

export function tokens(secret: string) {
  const sign = createSigner({ key: secret, algorithm: 'HS256' });
  return {
    shopper: (userId: string) => `Bearer ${sign({ sub: userId })}`,
    admin: (userId = 'ops') => `Bearer ${sign({ sub: userId, role: 'admin' })}`,
    sign: (claims: Record<string, unknown>) => `Bearer ${sign(claims)}`,
  };
}

let saleCounter = 0;

export interface SaleItemInput {
  sku: string;
  stock: number;
  perUserLimit?: number;
  unitPrice?: number;
  lowStock?: { percent: number } | { units: number };
}

/** A sale body for POST /v1/admin/sales, active now unless times are given. */
export function saleBody(items: SaleItemInput[], overrides: Record<string, unknown> = {}) {
  const now = Date.now();
  return {
    id: `sale-${process.pid}-${++saleCounter}`,
    name: 'Double 11',
    startsAt: new Date(now - 60_000).toISOString(),
    endsAt: new Date(now + 3_600_000).toISOString(),
    currency: 'CNY',
    paymentWindowSeconds: 900,
    items: items.map((item) => ({
      sku: item.sku,
      name: `Item ${item.sku}`,
      unitPrice: item.unitPrice ?? 399900,
      stock: item.stock,
      perUserLimit: item.perUserLimit ?? 2,
      ...(item.lowStock && { lowStock: item.lowStock }),
    })),
    ...overrides,
  };
}

export type SaleBody = ReturnType<typeof saleBody>;

export interface TestApiOptions {
  /** 'api' (the default) or 'all' (API plus relay, persist worker and sweeper). */
  readonly role?: 'api' | 'all';
  /** Config overrides on top of startTestService's. */
  readonly overrides?: Record<string, string>;
  /** Also connect a Postgres client to this file's database. */
  readonly db?: boolean;
}

export interface OpenApi<Db extends pg.Client | undefined> {
  readonly ctx: TestContext;
  readonly service: RunningService;
  readonly app: App;
  /** A Redis client of the test's own (connected on first use), to look behind the API. */
  readonly redis: Redis;
  readonly db: Db;
  readonly tk: Tokens;
  readonly port: number;
  readonly baseUrl: string;
}

export interface TestApi<Db extends pg.Client | undefined> extends SaleState {
  open(): Promise<OpenApi<Db>>;
  close(): Promise<void>;
  /** POST /v1/admin/sales as an operator; checks the 201 and returns the body sent. */
  createSale(items: SaleItemInput[], overrides?: Record<string, unknown>): Promise<SaleBody>;
}

/** A running service for one test file; create it at module scope and open() it in beforeAll. */
export function testApi(options: TestApiOptions & { db: true }): TestApi<pg.Client>;
export function testApi(options?: TestApiOptions): TestApi<undefined>;
export function testApi(options: TestApiOptions = {}): TestApi<pg.Client | undefined> {
  let opened: OpenApi<pg.Client | undefined> | undefined;
  let redis: Redis | undefined;
  let ctx: TestContext | undefined;
  let service: RunningService | undefined;
  let db: pg.Client | undefined;

  const the = () => {
    if (!opened) throw new Error('the test API is not open: call open() in beforeAll');
    return opened;
  };

  return {
    async open() {
      ctx = await createTestContext();
      service = await startTestService(ctx, options.role ?? 'api', options.overrides);
      const app = service.app;
      if (!app) throw new Error(`the ${options.role ?? 'api'} role has no app`);
      if (options.db) {
        db = new pg.Client({ connectionString: ctx.databaseUrl });
        await db.connect();
      }
      const port = (app.server.address() as AddressInfo).port;
      const redisUrl = ctx.redisUrl;
      opened = {
        ctx,
        service,
        app,
        get redis() {
          return (redis ??= new Redis(redisUrl));
        },
        db,
        tk: tokens(ctx.config.jwtSecret),
        port,
        baseUrl: `http://127.0.0.1:${port}`,
      };
      return opened;
    },

    async close() {
      opened = undefined;
      await service?.stop();
      redis?.disconnect();
      await db?.end();
      await ctx?.cleanup();
    },

    async createSale(items, overrides = {}) {
      const { app, tk } = the();
      const body = saleBody(items, overrides);
      const res = await app.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: tk.admin() }, payload: body });
      expect(res.statusCode, res.body).toBe(201);
      return body;
    },

    ...saleState(() => ({ redis: the().redis, prefix: the().ctx.prefix })),
  };
}
