// Helpers for HTTP tests: a running API on this file's database and namespace, and testApi(), a
// per-file fixture bundling it with Redis, Postgres, signed tokens and sale creation.
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, expect } from 'vitest';
import type { Role } from '../../src/config.ts';
import type { App } from '../../src/http/app.ts';
import { createLogger } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/service.ts';
import { saleBody, type SaleBody, type SaleItemInput } from '../../tools/sale-body.ts';
import { tokens, type Tokens } from '../../tools/tokens.ts';
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

// The shared builders, under the names the HTTP tests have always imported from here.
export { saleBody, tokens, type SaleBody, type SaleItemInput, type Tokens };

export interface TestApiOptions {
  /** 'api' (the default) or 'all' (API plus outbox persister, persist worker and sweeper). */
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
  /**
   * Another API on this file's database and namespace with `overrides` (a rate limit, say), running for
   * the tests of the describe block this is called in; the returned function gives its app inside a test.
   */
  apiWith(overrides: Record<string, string>): () => App;
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

    apiWith(overrides) {
      let other: RunningService | undefined;
      beforeAll(async () => {
        other = await startTestApi(the().ctx, overrides);
      });
      afterAll(async () => {
        await other?.stop();
      });
      return () => {
        if (!other?.app) throw new Error('the other API is not running: call apiWith() inside a describe block');
        return other.app;
      };
    },

    ...saleState(() => ({ redis: the().redis, prefix: the().ctx.prefix })),
  };
}
