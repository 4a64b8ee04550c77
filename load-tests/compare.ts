// Comparison targets, each started on its own only while it is driven (2 shared cores): the
// Fastify ceiling and the naive one-transaction-per-order Postgres design.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { findFreePort } from '../tools/free-port.ts';
import { spawnTs, waitForHttp } from '../tools/processes.ts';
import type { SaleItemSpec } from './scenarios.ts';

export type CompareTarget = 'ceiling' | 'naive-pg';
export const COMPARE_TARGETS: readonly CompareTarget[] = ['ceiling', 'naive-pg'];

export interface RunningTarget {
  readonly origin: string;
  /** Where to send the attempts; undefined = the service's own order path. */
  readonly path: string | undefined;
  /** Back to the starting stock after a warm-up. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

const NAIVE_SCHEMA = `
  DROP TABLE IF EXISTS naive_orders, naive_stock;
  CREATE TABLE naive_stock (sku text PRIMARY KEY, stock integer NOT NULL CHECK (stock >= 0));
  CREATE TABLE naive_orders (
    id bigserial PRIMARY KEY, sku text NOT NULL REFERENCES naive_stock (sku), user_id text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0), created_at timestamptz NOT NULL DEFAULT now()
  );`;

async function withClient(databaseUrl: string, work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}

export async function startTarget(
  target: CompareTarget,
  options: { readonly databaseUrl: string | undefined; readonly jwtSecret: string; readonly items: readonly SaleItemSpec[]; readonly logDir: string },
): Promise<RunningTarget> {
  const port = await findFreePort();
  const origin = `http://127.0.0.1:${port}`;
  const logFile = join(options.logDir, `${target}.log`);
  if (target === 'ceiling') {
    const child = spawnTs('ceiling', 'load-tests/targets/ceiling.ts', [], { PORT: String(port) }, logFile);
    await waitForHttp(child, `${origin}/health`);
    return { origin, path: '/ceiling', reset: async () => undefined, stop: () => child.stop() };
  }
  const databaseUrl = options.databaseUrl;
  if (!databaseUrl) throw new Error('--compare naive-pg needs a database (--database or DATABASE_URL)');
  const stock = [options.items.map((item) => item.sku), options.items.map((item) => item.stock)];
  await withClient(databaseUrl, async (client) => {
    await client.query(NAIVE_SCHEMA);
    await client.query('INSERT INTO naive_stock (sku, stock) SELECT * FROM unnest($1::text[], $2::int[])', stock);
  });
  const child = spawnTs('naive-pg', 'load-tests/targets/naive-pg.ts', [], { PORT: String(port), DATABASE_URL: databaseUrl, JWT_SECRET: options.jwtSecret }, logFile);
  await waitForHttp(child, `${origin}/health`);
  return {
    origin,
    path: undefined,
    async reset() {
      // Requests cut off at the end of the warm-up finish first; row-level statements only, so
      // nothing waits on a table lock held across the app's own transactions.
      await sleep(500);
      await withClient(databaseUrl, async (client) => {
        await client.query('DELETE FROM naive_orders');
        await client.query('UPDATE naive_stock SET stock = s.stock FROM unnest($1::text[], $2::int[]) AS s(sku, stock) WHERE naive_stock.sku = s.sku', stock);
      });
    },
    async stop() {
      await child.stop();
      await withClient(databaseUrl, (client) => client.query('DROP TABLE IF EXISTS naive_orders, naive_stock'));
    },
  };
}
