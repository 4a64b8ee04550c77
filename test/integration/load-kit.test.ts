// The load-test kit end to end: a tiny rush through runLoad against a service it starts as a
// child process on this file's database and Redis prefix; every invariant holds and the reports
// exist. And the README's command as written: the CLI finds Redis and Postgres with no URLs given.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoad } from '../../load-tests/run.ts';
import { createTestContext, type TestContext } from '../support/context.ts';

let ctx: TestContext;
let outDir: string;
beforeAll(async () => {
  ctx = await createTestContext();
  outDir = await mkdtemp(join(tmpdir(), 'load-kit-'));
});
afterAll(async () => {
  await ctx.cleanup();
  await rm(outDir, { recursive: true, force: true });
});

describe('load-test kit', () => {
  it('when a tiny rush runs against the service, then every invariant passes and report.json and report.html are written', async () => {
    const result = await runLoad({
      scenario: 'rush',
      duration: 3,
      connections: 10,
      stock: 50,
      skus: 5,
      users: 200,
      soldOutDuration: 1,
      warmup: 0,
      redisUrl: ctx.redisUrl,
      databaseUrl: ctx.databaseUrl,
      freshDatabase: false,
      redisPrefix: ctx.prefix,
      jwtSecret: ctx.config.jwtSecret,
      outDir,
      persistTimeoutSeconds: 30,
      // Other test files share the cores: shedding would turn their load into 503s here.
      serviceEnv: { SHED_EVENT_LOOP_DELAY_MS: '0' },
    });

    expect(result.invariants.filter((invariant) => invariant.verdict !== 'PASS')).toEqual([]);
    expect(result.passed).toBe(true);
    const rush = result.runs.find((run) => run.phase === 'rush' && run.target === 'reserve');
    expect(rush?.byStatus['201']).toBeGreaterThan(0);
    // The hot SKU sells out within 3 s at 10 connections, so sold-out answers are there too.
    expect(rush?.byCode['SOLD_OUT']).toBeGreaterThan(0);
    expect(existsSync(result.files.json)).toBe(true);
    expect(JSON.parse(readFileSync(result.files.json, 'utf8'))).toMatchObject({ passed: true, scenario: 'rush' });
    const html = readFileSync(result.files.html, 'utf8');
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/<script|<link /);
  }, 120_000);
});

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Runs `npm run load -- …args` as the README does, with neither REDIS_URL nor DATABASE_URL set. */
function runCliWithoutUrls(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  const { REDIS_URL: _redis, DATABASE_URL: _database, ...env } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', 'load-tests/cli.ts', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output })));
}

describe('load-test CLI', () => {
  it('when run without REDIS_URL, DATABASE_URL, --redis or --database, then it finds Redis and Postgres itself and every invariant passes', async () => {
    const out = join(outDir, 'cli');
    const { code, output } = await runCliWithoutUrls([
      '--scenario', 'rush', '--duration', '1', '--connections', '4', '--skus', '2', '--stock', '20', '--users', '50',
      '--sold-out-duration', '0', '--warmup', '0', '--out', out,
    ]);
    expect(output).not.toMatch(/give --redis and --database/);
    expect(code, output).toBe(0);
    expect(output).toMatch(/PASS: 0 invariant\(s\) violated/);
    expect(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))).toMatchObject({ passed: true, scenario: 'rush' });
  }, 120_000);
});
