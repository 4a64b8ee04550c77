// The production artifact: `npm run build` compiles src/ to JavaScript that runs on plain Node
// (no tsx, no TypeScript) from the image's layout — dist/ beside lua/, migrations/ and
// package.json — migrates a database, serves the storefront, persists orders and stops on SIGTERM.
import { execFile, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saleBody, tokens } from '../support/api.ts';
import { createTestContext, type TestContext } from '../support/context.ts';
import { hasExited, serviceEnvironment, spawnService, terminate, waitFor200 } from '../support/service-process.ts';
import { findFreePort } from '../../tools/free-port.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

let ctx: TestContext;
let stage: string;
let migrateOnlyUrl: string;

// The build goes to a private directory laid out like the image, so this file neither races
// anyone using the repository's dist/ nor passes because of a stale one.
beforeAll(async () => {
  ctx = await createTestContext();
  const url = new URL(ctx.databaseUrl);
  url.pathname = `${url.pathname}_m`;
  migrateOnlyUrl = url.toString();
  stage = await mkdtemp(path.join(tmpdir(), 'flashsale-build-'));
  await run('npm', ['run', 'build', '--', '--outDir', path.join(stage, 'dist')], { cwd: repoRoot });
  await copyFile(path.join(repoRoot, 'package.json'), path.join(stage, 'package.json'));
  for (const dir of ['lua', 'migrations', 'node_modules']) await symlink(path.join(repoRoot, dir), path.join(stage, dir), 'dir');
}, 180_000);

afterAll(async () => {
  if (stage) await rm(stage, { recursive: true, force: true });
  if (migrateOnlyUrl) {
    const admin = new pg.Client({ connectionString: ctx.databaseUrl });
    await admin.connect();
    const database = decodeURIComponent(new URL(migrateOnlyUrl).pathname.slice(1));
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`).finally(() => admin.end());
  }
  await ctx?.cleanup();
});

/** The compiled service runs as the image runs it: NODE_ENV=production. */
const environment = (overrides: Record<string, string>): NodeJS.ProcessEnv => serviceEnvironment(ctx, { NODE_ENV: 'production', ...overrides });

async function persistedOrder(orderId: string, timeoutMs: number): Promise<Record<string, unknown> | undefined> {
  const db = new pg.Client({ connectionString: ctx.databaseUrl });
  await db.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await db.query<Record<string, unknown>>('SELECT id, status FROM orders WHERE id = $1', [orderId]);
      if (rows[0] || Date.now() > deadline) return rows[0];
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await db.end();
  }
}

describe('the compiled migrate command', () => {
  it('when run on a database that does not exist, then it creates it, applies the migrations and exits 0', async () => {
    await run(process.execPath, ['dist/cli/migrate.js'], { cwd: stage, env: environment({ DATABASE_URL: migrateOnlyUrl }) });
    const db = new pg.Client({ connectionString: migrateOnlyUrl });
    await db.connect();
    try {
      const { rows } = await db.query<{ name: string }>('SELECT name FROM schema_migrations ORDER BY id');
      expect(rows.map((row) => row.name)).toContain('0001_init.sql');
    } finally {
      await db.end();
    }
  });
});

describe('node dist/main.js all', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && !hasExited(child)) child.kill('SIGKILL');
  });

  it('when started, then it becomes ready, takes a sale and an order, persists the order, and exits 0 on SIGTERM', async () => {
    const [port, metricsPort] = [await findFreePort(), await findFreePort()];
    child = spawnService(['dist/main.js', 'all'], environment({ PORT: String(port), METRICS_PORT: String(metricsPort) }), stage);
    const base = `http://127.0.0.1:${port}`;
    const ready = await waitFor200(`${base}/health/ready`, 30_000);
    expect(await ready.json()).toMatchObject({ status: 'ok', checks: { scripts: true } });

    const tk = tokens(ctx.config.jwtSecret);
    const sale = saleBody([{ sku: 'phone-x', stock: 5, perUserLimit: 2 }]);
    const created = await fetch(`${base}/v1/admin/sales`, {
      method: 'POST',
      headers: { authorization: tk.admin(), 'content-type': 'application/json' },
      body: JSON.stringify(sale),
    });
    expect(created.status).toBe(201);

    const placed = await fetch(`${base}/v1/sales/${sale.id}/orders`, {
      method: 'POST',
      headers: { authorization: tk.shopper('u-1'), 'content-type': 'application/json' },
      body: JSON.stringify({ sku: 'phone-x', quantity: 1 }),
    });
    expect(placed.status).toBe(201);
    const order = (await placed.json()) as { orderId: string; status: string };
    expect(order.status).toBe('pending_payment');
    // The `all` role also runs the outbox persister, which writes the order to Postgres.
    expect(await persistedOrder(order.orderId, 20_000)).toEqual({ id: order.orderId, status: 'pending_payment' });

    const { code, elapsedMs } = await terminate(child);
    expect(code).toBe(0);
    expect(elapsedMs).toBeLessThan(10_000);
  });
});
