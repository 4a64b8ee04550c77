// Forward-only migration runner: applies migrations/NNNN_*.sql in order, once each, each in its own
// transaction under an advisory lock, recorded in a ledger; refuses a database ahead of the code.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

// Any constant works; it only has to be the same for every runner of this project.
const LOCK_KEY = 0x0f1a5_5a1e;
const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+\.sql$/;

export interface Migration {
  readonly id: number;
  readonly name: string;
  readonly sql: string;
}

export interface MigrateOptions {
  readonly databaseUrl: string;
  readonly dir?: string;
  readonly log?: (message: string) => void;
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const name of names) {
    const match = FILE_PATTERN.exec(name);
    if (!match?.[1]) throw new MigrationError(`migration file name ${name} does not match NNNN_name.sql`);
    const id = Number(match[1]);
    if (migrations.some((m) => m.id === id)) throw new MigrationError(`two migrations are numbered ${id}`);
    migrations.push({ id, name, sql: await readFile(path.join(dir, name), 'utf8') });
  }
  return migrations;
}

/** Creates the database named in the URL when it does not exist (racing creators are fine). */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.slice(1));
  if (!database) throw new MigrationError('DATABASE_URL names no database');
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const found = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) {
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`).catch((error: unknown) => {
        // 42P04 duplicate_database, 23505: a concurrent runner created it first.
        const code = (error as { code?: string }).code;
        if (code !== '42P04' && code !== '23505') throw error;
      });
    }
  } finally {
    await admin.end();
  }
}

/** Applies pending migrations; returns the file names it applied. */
export async function migrate(options: MigrateOptions): Promise<string[]> {
  const log = options.log ?? (() => {});
  const migrations = await readMigrations(options.dir);
  await ensureDatabase(options.databaseUrl);
  const client = new pg.Client({ connectionString: options.databaseUrl });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ id: number; name: string }>('SELECT id, name FROM schema_migrations ORDER BY id');
    for (const row of rows) {
      const known = migrations.find((m) => m.id === row.id);
      if (!known) throw new MigrationError(`database has migration ${row.name} that this code does not know; refusing`);
      if (known.name !== row.name) throw new MigrationError(`migration ${row.id} is ${row.name} in the database but ${known.name} here`);
    }
    const appliedIds = new Set(rows.map((row) => row.id));
    const applied: string[] = [];
    for (const migration of migrations.filter((m) => !appliedIds.has(m.id))) {
      await client.query('BEGIN');
      try {
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (id, name) VALUES ($1, $2)', [migration.id, migration.name]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new MigrationError(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
      }
      log(`applied ${migration.name}`);
      applied.push(migration.name);
    }
    return applied;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    await client.end();
  }
}
