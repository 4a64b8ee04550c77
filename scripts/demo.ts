// `npm run demo`: one command from a fresh clone. Finds (or starts) Redis and Postgres, starts the
// service, creates a Double-11-style sale, runs a short rush, prints what sold and what was
// refused and why, checks the invariants, and stops everything it started. Exit code 0 only when
// every invariant holds.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatReport } from '../load-tests/report-text.ts';
import type { LoadResult } from '../load-tests/result.ts';
import { runLoad } from '../load-tests/run.ts';
import { MissingServiceError, withServices } from '../tools/services.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RUSH_SECONDS = 6;

function printSold(result: LoadResult): void {
  const report = result.persistence.report;
  if (!report) return;
  console.log('\nWhat sold (from the operator report, GET /v1/admin/sales/:id/report):');
  console.log('  sku        stock  sold  left  state');
  for (const item of report.items) {
    const stock = item.initialStock + item.restocked;
    console.log(`  ${item.sku.padEnd(9)} ${String(stock).padStart(6)} ${String(item.reserved).padStart(5)} ${String(item.available).padStart(5)}  ${item.state}`);
  }
  console.log(`  orders accepted ${report.ordersAccepted}, in Postgres ${report.ordersPersisted}`);
  const refused: Record<string, number> = {};
  for (const run of result.runs.filter((r) => r.target === 'reserve')) {
    for (const [code, n] of Object.entries(run.byCode)) refused[code] = (refused[code] ?? 0) + n;
  }
  console.log('\nWhy attempts were refused:');
  for (const [code, n] of Object.entries(refused).sort(([, a], [, b]) => b - a)) console.log(`  ${code.padEnd(26)} ${n}`);
}

let exitCode = 1;
try {
  console.log('Flash-sale demo: finding Redis and Postgres …');
  const log = (line: string) => console.log(`  ${line}`);
  const wanted = { redisUrl: process.env['REDIS_URL'], postgresUrl: process.env['DATABASE_URL'] };
  const result = await withServices(wanted, log, async (services) => {
    console.log(`  Redis    ${services.redisUrl}\n  Postgres ${services.postgresUrl}`);
    console.log(`Starting the service (it migrates a fresh database), creating a Double 11 sale and rushing it for ${RUSH_SECONDS} s …\n`);
    return runLoad({
      scenario: 'rush',
      duration: RUSH_SECONDS,
      connections: 50,
      skus: 6,
      stock: 300,
      perUserLimit: 2,
      users: 5_000,
      soldOutDuration: 2,
      warmup: 1,
      redisUrl: services.redisUrl,
      databaseUrl: services.postgresUrl,
      outDir: path.join(ROOT, 'reports', 'demo'),
      progress: process.stderr.isTTY ? 'bar' : 'off',
      log: (line) => console.log(line),
    });
  });
  console.log(formatReport(result));
  printSold(result);
  console.log(`\nReports: ${result.files.html} and ${result.files.json}`);
  console.log(result.passed ? '\nEvery invariant holds.' : '\nAN INVARIANT WAS VIOLATED (see above).');
  exitCode = result.passed ? 0 : 1;
} catch (error) {
  if (error instanceof MissingServiceError) console.error(`\n${error.message}`);
  else console.error('\nThe demo failed:', error);
}
process.exit(exitCode);
