// The Postgres connection pool; bigint columns (money) come back as strings, parsed at the seams.
import pg from 'pg';
import type { Config } from '../config.ts';

export type Pool = pg.Pool;

export function createPool(config: Pick<Config, 'databaseUrl'>, max = 10): Pool {
  return new pg.Pool({
    connectionString: config.databaseUrl,
    max,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
  });
}
