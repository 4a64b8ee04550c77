// `npm run load -- [options]`: parses the options, finds Redis and Postgres as the demo does (unless
// --url names a running service), runs the load test (run.ts), prints the report and exits
// non-zero when an invariant was violated (2 for bad usage, 1 for a failed run).
import { parseArgs } from 'node:util';
import { MissingServiceError, withServices } from '../tools/services.ts';
import { COMPARE_TARGETS, type CompareTarget } from './compare.ts';
import { formatReport } from './report-text.ts';
import { runLoad, type LoadOptions } from './run.ts';
import { SCENARIO_NAMES, SCENARIOS, type ScenarioName } from './scenarios.ts';

const HELP = `Flash-sale load-test kit: drives the order API with autocannon, then checks the invariants.

usage: npm run load -- [options]

scenarios (--scenario):
${SCENARIO_NAMES.map((name) => {
  const s = SCENARIOS[name];
  return `  ${name.padEnd(10)} ${s.description}\n  ${''.padEnd(10)} defaults: ${s.duration} s, ${s.connections} connections${s.rate ? `, ${s.rate} req/s` : ''}`;
}).join('\n')}
  Every scenario is followed by a sold-out phase: all attempts hit a sold-out SKU.

options:
  --scenario NAME        rush | sustained | soak (default rush)
  --url URL              an already running service (default: start one as a child process)
  --redis URL            Redis for the started service (default $REDIS_URL, else 127.0.0.1:6379,
                         else a redis-server started under .data/)
  --database URL         Postgres server for the started service, which gets a fresh database on it
                         (default $DATABASE_URL, else 127.0.0.1:5432, else a postgres started under
                         .data/); with --url: the service's own database, read for the invariants
  --duration SECONDS     length of the main phase (capped at 3600)
  --connections N        concurrent connections
  --rate N               requests per second over all connections (autocannon overallRate)
  --stock N              units per SKU (rush default 500; rate runs: enough not to sell out)
  --skus N               SKUs: one hot SKU and a tail (default 20)
  --per-user-limit N     per-user limit of every SKU (default 2)
  --users N              distinct shoppers, one pre-minted token each (default 10000)
  --sold-out-duration S  length of the sold-out phase (default min(5, duration); 0 = none)
  --keyed-share F        share of attempts with an Idempotency-Key, 0–1 (default 0.8)
  --warmup S             unmeasured traffic to each target first (ours: a twin sale; default 2; 0 = none)
  --compare TARGET       also drive, one after the other, with the same settings:
                           ceiling   a bare Fastify app answering a small JSON
                           naive-pg  one Postgres transaction per order (UPDATE stock, INSERT order)
                         repeatable
  --out DIR              where report.json, report.html and process logs go (default reports/)
  --jwt-secret SECRET    HS256 secret (default $JWT_SECRET; a random one for a started service)
  --keep                 keep the started service's database and Redis keys
  -h, --help             this text

exit code: 0 when every invariant holds, 1 when one is violated or the run failed, 2 on bad usage.
`;

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new UsageError(`--${name} must be a non-negative integer, not "${value}"`);
  return parsed;
}

function share(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!(parsed >= 0 && parsed <= 1)) throw new UsageError(`--${name} must be a number from 0 to 1, not "${value}"`);
  return parsed;
}

class UsageError extends Error {}

function parse(argv: readonly string[]): LoadOptions | 'help' {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      scenario: { type: 'string' },
      url: { type: 'string' },
      redis: { type: 'string' },
      database: { type: 'string' },
      duration: { type: 'string' },
      connections: { type: 'string' },
      rate: { type: 'string' },
      stock: { type: 'string' },
      skus: { type: 'string' },
      'per-user-limit': { type: 'string' },
      users: { type: 'string' },
      'sold-out-duration': { type: 'string' },
      warmup: { type: 'string' },
      'keyed-share': { type: 'string' },
      compare: { type: 'string', multiple: true },
      out: { type: 'string' },
      'jwt-secret': { type: 'string' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals.join(' ')}`);
  const scenario = values.scenario ?? 'rush';
  if (!SCENARIO_NAMES.includes(scenario as ScenarioName)) throw new UsageError(`--scenario must be one of ${SCENARIO_NAMES.join(', ')}`);
  const compare = values.compare ?? [];
  for (const target of compare) if (!COMPARE_TARGETS.includes(target as CompareTarget)) throw new UsageError(`--compare must be one of ${COMPARE_TARGETS.join(', ')}`);
  return {
    scenario: scenario as ScenarioName,
    url: values.url,
    redisUrl: values.redis ?? process.env['REDIS_URL'],
    databaseUrl: values.database ?? process.env['DATABASE_URL'],
    duration: integer('duration', values.duration),
    connections: integer('connections', values.connections),
    rate: integer('rate', values.rate),
    stock: integer('stock', values.stock),
    skus: integer('skus', values.skus),
    perUserLimit: integer('per-user-limit', values['per-user-limit']),
    users: integer('users', values.users),
    soldOutDuration: integer('sold-out-duration', values['sold-out-duration']),
    warmup: integer('warmup', values.warmup),
    keyedShare: share('keyed-share', values['keyed-share']),
    compare: compare as CompareTarget[],
    outDir: values.out ?? 'reports',
    jwtSecret: values['jwt-secret'] ?? process.env['JWT_SECRET'],
    keep: values.keep ?? false,
    progress: process.stderr.isTTY ? 'bar' : 'lines',
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

async function main(): Promise<number> {
  let options: LoadOptions | 'help';
  try {
    options = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const run = options;
  try {
    // A running service (--url) brings its own Redis and Postgres; otherwise find or start them.
    const result = run.url
      ? await runLoad(run)
      : await withServices({ redisUrl: run.redisUrl, postgresUrl: run.databaseUrl }, (line) => run.log?.(line), (services) =>
          runLoad({ ...run, redisUrl: services.redisUrl, databaseUrl: services.postgresUrl }),
        );
    process.stdout.write(`\n${formatReport(result)}\n`);
    return result.passed ? 0 : 1;
  } catch (err) {
    if (err instanceof MissingServiceError) process.stderr.write(`${err.message}\n`);
    else process.stderr.write(`load test failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main();
