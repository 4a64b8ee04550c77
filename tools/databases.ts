// Postgres databases by URL for tests, the load kit and the benchmark: the URL of another
// database on the same server, the name a URL points at, and statements run on the server itself.
import pg from 'pg';

/** serverUrl with its path replaced by `database` (user, host, port and parameters kept). */
export function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** The database a URL names. */
export function databaseName(databaseUrl: string): string {
  return decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
}

/** Runs statements on the server's maintenance database (CREATE / DROP DATABASE cannot run inside the target). */
export function onServer<T>(serverUrl: string, work: (admin: pg.Client) => Promise<T>): Promise<T> {
  return onDatabase(withDatabase(serverUrl, 'postgres'), work);
}

/** Runs `work` on a connection of its own to the database the URL names, closed after. */
export async function onDatabase<T>(databaseUrl: string, work: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    return await work(db);
  } finally {
    await db.end().catch(() => undefined);
  }
}

export async function createDatabase(serverUrl: string, database: string): Promise<string> {
  await onServer(serverUrl, (admin) => admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`));
  return withDatabase(serverUrl, database);
}

/** Drops the database the URL names, closing whatever is still connected to it. */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const database = databaseName(databaseUrl);
  await onServer(databaseUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`));
}
