// `npm run reconcile -- [--sale ID] [--fix]` (node dist/cli/reconcile.js): compares each item of one
// sale (or of every live sale) in Redis with Postgres — stock, live quantity, per-shopper counts —
// prints the drift as a table and exits 1 while drift remains; with --fix a drifted sale is rebuilt
// from Postgres (src/recovery/rebuild.ts) and checked again. Exit 2: bad arguments or an unknown sale.
import { parseArgs } from 'node:util';
import { loadConfigOrExit } from '../config.ts';
import { createPool } from '../db/pool.ts';
import { createLogger } from '../logger.ts';
import { closeRedis, createRedis } from '../redis/connection.ts';
import { SaleRebuilder } from '../recovery/rebuild.ts';
import { driftTable, reconcileSale, type SaleReconciliation } from '../recovery/reconcile.ts';
import { liveSales } from '../recovery/recovery.ts';
import { SaleRepository } from '../sales/repository.ts';

let args: { sale?: string | undefined; fix?: boolean | undefined };
try {
  ({ values: args } = parseArgs({ options: { sale: { type: 'string' }, fix: { type: 'boolean' } }, strict: true }));
} catch (error) {
  process.stderr.write(`${(error as Error).message}\nusage: npm run reconcile -- [--sale ID] [--fix]\n`);
  process.exit(2);
}

const config = loadConfigOrExit();
const logger = createLogger(config);
const redis = createRedis(config, { name: 'flashsale-reconcile' });
const pool = createPool(config, 2);
const rebuilder = new SaleRebuilder(redis, config.redis.prefix, pool, new SaleRepository(pool), logger);

async function check(saleIds: readonly string[]): Promise<SaleReconciliation[]> {
  const results: SaleReconciliation[] = [];
  for (const saleId of saleIds) {
    const result = await reconcileSale(redis, config.redis.prefix, pool, rebuilder, saleId);
    if (!result) throw new UnknownSale(saleId);
    results.push(result);
  }
  return results;
}

class UnknownSale extends Error {}

try {
  const saleIds = args.sale !== undefined ? [args.sale] : (await liveSales(pool)).map((sale) => sale.id);
  let results = await check(saleIds);
  process.stdout.write(`${driftTable(results)}\n`);
  const drifted = results.filter((result) => result.drift).map((result) => result.saleId);
  if (args.fix && drifted.length > 0) {
    for (const saleId of drifted) {
      const outcome = await rebuilder.rebuild(saleId, { force: true });
      process.stdout.write(`rebuilt ${saleId} from Postgres: ${JSON.stringify(outcome)}\n`);
    }
    results = await check(drifted);
    process.stdout.write(`after --fix:\n${driftTable(results)}\n`);
  }
  process.exitCode = results.some((result) => result.drift) ? 1 : 0;
} catch (error) {
  if (error instanceof UnknownSale) {
    process.stderr.write(`no sale ${JSON.stringify(error.message)} in Postgres\n`);
    process.exitCode = 2;
  } else {
    logger.fatal({ err: error }, 'reconcile failed');
    process.exitCode = 1;
  }
} finally {
  await closeRedis(redis);
  await pool.end();
}
