// Polling Postgres for the orders a drill waits on.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/** Polls until every id has a row in `orders`; the milliseconds it took, or undefined at the timeout. */
export async function waitPersisted(databaseUrl: string, ids: readonly string[], timeoutMs: number): Promise<number | undefined> {
  const started = Date.now();
  for (;;) {
    const db = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 2_000 });
    db.on('error', () => undefined);
    const found = await db
      .connect()
      .then(() => db.query<{ n: string }>('SELECT count(*) AS n FROM orders WHERE id::text = ANY($1)', [ids]))
      .then((result) => Number(result.rows[0]?.n ?? 0))
      .catch(() => -1)
      .finally(() => db.end().catch(() => undefined));
    if (found === ids.length) return Date.now() - started;
    if (Date.now() - started > timeoutMs) return undefined;
    await sleep(200);
  }
}
