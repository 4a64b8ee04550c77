// The migration runner's promises: creates the database, applies once, is safe when run
// concurrently, leaves nothing half-applied on failure, and refuses a database ahead of the code.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { MIGRATIONS_DIR, MigrationError, migrate } from '../../src/db/migrate.ts';
import { withDatabase } from '../../tools/databases.ts';

const services = inject('services');
let counter = 0;
// Every migration the repository ships, in the order they apply.
const ALL = readdirSync(MIGRATIONS_DIR).filter((name) => /^\d{4}_.+\.sql$/.test(name)).sort();
const freshDatabaseUrl = () => withDatabase(services.postgresUrl, `${services.runId}_migrate_${process.pid}_${counter++}`);

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

let brokenDir: string;
beforeAll(async () => {
  brokenDir = await mkdtemp(path.join(tmpdir(), 'fs-migrations-'));
  await cp(MIGRATIONS_DIR, brokenDir, { recursive: true });
  await writeFile(
    path.join(brokenDir, '0900_broken.sql'),
    'CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT * FROM no_such_table;\n',
  );
});
afterAll(async () => rm(brokenDir, { recursive: true, force: true }));

describe('migrate', () => {
  it('when the database does not exist, then it is created and every migration applied', async () => {
    const url = freshDatabaseUrl();
    expect(await migrate({ databaseUrl: url })).toEqual(ALL);
    const tables = await query<{ table_name: string }>(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
    expect(tables.map((t) => t.table_name)).toEqual(['order_dead_letters', 'orders', 'sale_items', 'sales', 'schema_migrations']);
  });

  it('when run twice, then the second run applies nothing', async () => {
    const url = freshDatabaseUrl();
    await migrate({ databaseUrl: url });
    expect(await migrate({ databaseUrl: url })).toEqual([]);
    expect(await query(url, 'SELECT id FROM schema_migrations')).toHaveLength(ALL.length);
  });

  it('when several runners start at once, then each migration is applied exactly once', async () => {
    const url = freshDatabaseUrl();
    const results = await Promise.all(Array.from({ length: 5 }, () => migrate({ databaseUrl: url })));
    expect(results.flat()).toEqual(ALL);
    expect(await query(url, 'SELECT id FROM schema_migrations')).toHaveLength(ALL.length);
  });

  it('when a migration fails, then it leaves nothing half-applied and later runs retry it', async () => {
    const url = freshDatabaseUrl();
    await expect(migrate({ databaseUrl: url, dir: brokenDir })).rejects.toThrow(/0900_broken.sql failed/);
    const ledger = await query<{ name: string }>(url, 'SELECT name FROM schema_migrations');
    expect(ledger.map((row) => row.name)).toEqual(ALL);
    expect(await query(url, "SELECT to_regclass('half_done') AS t")).toEqual([{ t: null }]);
    await expect(migrate({ databaseUrl: url, dir: brokenDir })).rejects.toBeInstanceOf(MigrationError);
  });

  it('when the database has a migration this code does not know, then it is refused', async () => {
    const url = freshDatabaseUrl();
    await migrate({ databaseUrl: url });
    await query(url, "INSERT INTO schema_migrations (id, name) VALUES (9999, '9999_from_the_future.sql')");
    await expect(migrate({ databaseUrl: url })).rejects.toThrow(/9999_from_the_future.sql.*does not know/);
  });

  it('when `npm run migrate` fails, then it exits non-zero', async () => {
    const url = freshDatabaseUrl();
    await migrate({ databaseUrl: url });
    await query(url, "INSERT INTO schema_migrations (id, name) VALUES (9999, '9999_from_the_future.sql')");
    const run = promisify(execFile)('npx', ['tsx', 'src/cli/migrate.ts'], {
      env: { PATH: process.env.PATH, DATABASE_URL: url, NODE_ENV: 'development' },
    });
    await expect(run).rejects.toMatchObject({ code: 1 });
  });
});

describe('schema constraints', () => {
  it('when rows break the contract, then Postgres refuses them (quantity, status, sold ≤ stock)', async () => {
    const url = freshDatabaseUrl();
    await migrate({ databaseUrl: url });
    await query(url, "INSERT INTO sales (id, name, starts_at, ends_at, currency) VALUES ('s1', 'S', now(), now() + interval '1 hour', 'CNY')");
    await query(url, "INSERT INTO sale_items (sale_id, sku, name, unit_price, initial_stock, per_user_limit) VALUES ('s1', 'a', 'A', 100, 2, 1)");
    const order = (quantity: number, status: string) =>
      query(url, `INSERT INTO orders (id, sale_id, sku, user_id, quantity, unit_price, amount, status, created_at, expires_at)
                  VALUES (gen_random_uuid(), 's1', 'a', 'u1', $1, 100, 100 * $1, $2, now(), now())`, [quantity, status]);
    await expect(order(0, 'pending_payment')).rejects.toThrow(/check constraint/);
    await expect(order(1, 'shipped')).rejects.toThrow(/check constraint/);
    await expect(order(1, 'paid')).rejects.toThrow(/orders_paid_has_time/);
    await expect(order(1, 'pending_payment')).resolves.toBeDefined();
    await expect(query(url, "UPDATE sale_items SET sold = 3 WHERE sku = 'a'")).rejects.toThrow(/sale_items_sold_within_stock/);
    await expect(query(url, "UPDATE sale_items SET sold = 2 WHERE sku = 'a'")).resolves.toBeDefined();
  });

  it('when a restock or price would break the stock limits, then Postgres refuses it by name', async () => {
    const url = freshDatabaseUrl();
    await migrate({ databaseUrl: url });
    await query(url, "INSERT INTO sales (id, name, starts_at, ends_at, currency) VALUES ('s1', 'S', now(), now() + interval '1 hour', 'CNY')");
    await query(url, "INSERT INTO sale_items (sale_id, sku, name, unit_price, initial_stock, per_user_limit) VALUES ('s1', 'a', 'A', 1, 1000000000, 1)");
    await query(url, "INSERT INTO sale_items (sale_id, sku, name, unit_price, initial_stock, per_user_limit) VALUES ('s1', 'b', 'B', 10000000000, 900000, 1)");
    const restock = (sku: string, quantity: number) =>
      query(url, 'UPDATE sale_items SET restocked = restocked + $2::bigint WHERE sku = $1', [sku, quantity]);
    // Three restocks of 1e9 would overflow int4; the CHECK refuses the first, by name.
    for (let i = 0; i < 3; i++) await expect(restock('a', 1_000_000_000)).rejects.toThrow(/sale_items_stock_within_limit/);
    await expect(restock('b', 100_000)).rejects.toThrow(/sale_items_value_within_limit/);
    await expect(restock('b', 720)).rejects.toThrow(/sale_items_value_within_limit/);
    await expect(restock('b', 719)).resolves.toBeDefined();
    await expect(query(url, "UPDATE sale_items SET unit_price = 10000000001, initial_stock = 1 WHERE sku = 'b'")).rejects.toThrow(/sale_items_unit_price_within_limit/);
  });
});
