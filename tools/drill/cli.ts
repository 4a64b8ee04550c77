// `npm run drill -- --scenario NAME[,NAME…|all] [--out DIR] [--appendfsync always|everysec]`:
// the disaster rehearsal as a command. Each scenario starts private servers (redis-server, postgres)
// and the service as real processes, rushes a sale, injects its fault, lets the service recover,
// checks every invariant through Postgres and reports. Exits 1 when a drill failed, 2 on bad usage.
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { DrillOptions } from './drill.ts';
import { renderText, writeReports, type DrillReport } from './report.ts';
import { SCENARIOS, scenarioNamed } from './scenarios/index.ts';

const USAGE = `usage: npm run drill -- --scenario NAME[,NAME…|all] [--out DIR] [--appendfsync always|everysec]

scenarios:
${SCENARIOS.map((s) => `  ${s.name.padEnd(16)} ${s.summary}`).join('\n')}

Writes DIR/drill.json and DIR/drill.html (default DIR: drill-report). Needs redis-server and postgres
binaries on PATH (or /usr/lib/postgresql/*/bin); uses no shared server.`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        scenario: { type: 'string' },
        out: { type: 'string', default: 'drill-report' },
        appendfsync: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const names = values.scenario === 'all' ? SCENARIOS.map((s) => s.name) : (values.scenario ?? '').split(',').filter((n) => n !== '');
  const unknown = names.filter((name) => scenarioNamed(name) === undefined);
  if (names.length === 0 || unknown.length > 0) {
    process.stderr.write(`${unknown.length > 0 ? `unknown scenario: ${unknown.join(', ')}\n` : ''}${USAGE}\n`);
    return 2;
  }
  const fsync = values.appendfsync;
  if (fsync !== undefined && fsync !== 'always' && fsync !== 'everysec') {
    process.stderr.write(`--appendfsync must be always or everysec\n${USAGE}\n`);
    return 2;
  }
  const options: DrillOptions = {
    log: (line) => process.stdout.write(`${line}\n`),
    ...(fsync === undefined ? {} : { appendfsync: fsync }),
  };
  const reports: DrillReport[] = [];
  for (const name of names) {
    const report = await scenarioNamed(name)!.run(options);
    reports.push(report);
    process.stdout.write(`\n${renderText(report)}\n\n`);
  }
  const paths = await writeReports(resolve(values.out), { generatedAt: new Date().toISOString(), host: hostname(), drills: reports });
  process.stdout.write(`report: ${paths.json}, ${paths.html}\n`);
  process.stdout.write(`${reports.map((r) => `${r.scenario}: ${r.status}`).join('; ')}\n`);
  return reports.some((r) => r.status === 'failed') ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
