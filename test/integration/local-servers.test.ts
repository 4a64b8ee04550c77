// The private Redis and Postgres servers that the harness and fault-injection tests rely on:
// they start, really die when killed, come back on restart, and clean up after themselves.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Cluster, Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findFreePort } from '../../tools/free-port.ts';
import { resolveBinary, startLocalPostgres, startLocalRedis, type LocalServer } from '../../tools/local-servers.ts';

const started: LocalServer[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((server) => server.stop()));
});

async function track(server: Promise<LocalServer>): Promise<LocalServer> {
  const s = await server;
  started.push(s);
  return s;
}

/** A client that fails at once instead of reconnecting, so a dead server shows as an error. */
async function redisClient(url: string): Promise<Redis> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function pgClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Alive and not a zombie (an orphan's zombie may linger if PID 1 does not reap). */
function isAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function eventually(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await sleep(100);
  }
  return check();
}

describe('local Redis', () => {
  it('when a Redis without persistence is SIGKILLed, then clients fail, and after restart it answers empty on the same port', async () => {
    const redis = await track(startLocalRedis());
    const client = await redisClient(redis.url);
    await client.set('k', 'v');
    const oldPid = redis.pid;

    await redis.kill('SIGKILL');

    expect(redis.running).toBe(false);
    expect(isAlive(oldPid)).toBe(false);
    await expect(client.get('k')).rejects.toThrow();
    await expect(redisClient(redis.url)).rejects.toThrow();
    client.disconnect();

    await redis.restart();

    expect(redis.running).toBe(true);
    expect(redis.pid).not.toBe(oldPid);
    const after = await redisClient(redis.url);
    expect(await after.ping()).toBe('PONG');
    // Started without appendonly and with no RDB snapshots: nothing is kept.
    expect(await after.get('k')).toBeNull();
    after.disconnect();
  });

  it('when a Redis with appendonly is SIGKILLed right after a write, then the write survives the restart', async () => {
    const redis = await track(startLocalRedis({ appendonly: true }));
    const client = await redisClient(redis.url);
    for (let i = 0; i < 100; i++) await client.incr('counter');
    client.disconnect();

    await redis.kill('SIGKILL');
    await redis.restart();

    const after = await redisClient(redis.url);
    expect(await after.get('counter')).toBe('100');
    after.disconnect();
  });

  it('when started with clusterEnabled, then a cluster client can write keys of any slot', async () => {
    const redis = await track(startLocalRedis({ clusterEnabled: true }));
    const cluster = new Cluster([{ host: '127.0.0.1', port: redis.port }], { clusterRetryStrategy: () => null });
    cluster.on('error', () => undefined);
    try {
      await cluster.set('fs:{a}:x', '1');
      await cluster.set('fs:{zz}:y', '2');
      expect(await cluster.get('fs:{a}:x')).toBe('1');
      expect(await cluster.get('fs:{zz}:y')).toBe('2');
    } finally {
      cluster.disconnect();
    }
  });

  it('when a server is stopped, then its temp dir is removed and its port is free again', async () => {
    const redis = await startLocalRedis({ appendonly: true });
    expect(existsSync(redis.dir)).toBe(true);

    await redis.stop();

    expect(existsSync(redis.dir)).toBe(false);
    expect(isAlive(redis.pid)).toBe(false);
    await expect(listenOn(redis.port)).resolves.toBeUndefined();
    await expect(redis.restart()).rejects.toThrow(/was stopped/);
    await redis.stop(); // idempotent
  });

  it('when several servers start at once, then each gets its own port and dir', async () => {
    const servers = await Promise.all([1, 2, 3, 4].map(() => track(startLocalRedis())));

    expect(new Set(servers.map((s) => s.port)).size).toBe(4);
    expect(new Set(servers.map((s) => s.dir)).size).toBe(4);
    for (const server of servers) {
      const client = await redisClient(server.url);
      expect(await client.ping()).toBe('PONG');
      client.disconnect();
    }
  });

  it('when the requested port is taken, then start fails fast with the server log and leaves no temp dir', async () => {
    const port = await findFreePort();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const startedAt = Date.now();
      const error = await startLocalRedis({ port, readyTimeoutMs: 5_000 }).then(
        () => new Error('expected start to fail'),
        (err: unknown) => err,
      );
      expect(Date.now() - startedAt).toBeLessThan(5_000);
      expect(error).toBeInstanceOf(Error);
      const message = (error as Error).message;
      expect(message).toMatch(/redis log[\s\S]*Address already in use/i);
      const dir = /\(dir ([^)]+)\)/.exec(message)?.[1];
      expect(dir).toBeDefined();
      expect(existsSync(dir ?? '')).toBe(false);
    } finally {
      blocker.close();
    }
  });
});

describe('local Postgres', () => {
  it('when Postgres is SIGKILLed, then connections fail, and after restart committed rows are still there', async () => {
    const postgres = await track(startLocalPostgres());
    expect(postgres.url).toBe(`postgres://postgres@127.0.0.1:${postgres.port}/postgres`);
    const client = await pgClient(postgres.url);
    await client.query('CREATE TABLE t (id int PRIMARY KEY, note text)');
    await client.query(`INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g`);
    const oldPid = postgres.pid;

    await postgres.kill('SIGKILL');

    expect(isAlive(oldPid)).toBe(false);
    await expect(client.query('SELECT 1')).rejects.toThrow();
    await client.end().catch(() => undefined);
    await expect(pgClient(postgres.url)).rejects.toThrow();

    await postgres.restart();

    const after = await pgClient(postgres.url);
    const { rows } = await after.query<{ n: string }>('SELECT count(*) AS n FROM t');
    expect(rows[0]?.n).toBe('500');
    await after.end();
  });

  it('when Postgres is stopped with clients still connected, then it shuts down and its data dir is removed', async () => {
    const postgres = await startLocalPostgres();
    const client = await pgClient(postgres.url);
    expect(existsSync(join(postgres.dir, 'PG_VERSION'))).toBe(true);

    await postgres.stop();

    expect(existsSync(postgres.dir)).toBe(false);
    expect(isAlive(postgres.pid)).toBe(false);
    await client.end().catch(() => undefined);
  });

  it('when given a data dir, then a second server started on it sees the first one\'s data, and the dir is kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'local-servers-test-'));
    chmodSync(dir, 0o755); // Postgres may run as another user, who must be able to reach data/
    try {
      const first = await startLocalPostgres({ dir: join(dir, 'data') });
      const c1 = await pgClient(first.url);
      await c1.query('CREATE TABLE kept (v text)');
      await c1.query(`INSERT INTO kept VALUES ('hello')`);
      await c1.end();
      await first.stop();
      expect(existsSync(join(dir, 'data', 'PG_VERSION'))).toBe(true);

      const second = await startLocalPostgres({ dir: join(dir, 'data') });
      const c2 = await pgClient(second.url);
      const { rows } = await c2.query<{ v: string }>('SELECT v FROM kept');
      expect(rows.map((r) => r.v)).toEqual(['hello']);
      await c2.end();
      await second.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the process that owns the servers', () => {
  interface ServerInfo {
    pid: number;
    dir: string;
  }

  /**
   * Runs `body` in a separate Node process that starts a Redis (with AOF) and a Postgres as `r`
   * and `p`, prints their pids and dirs, then does whatever `body` says.
   */
  async function runOwner(body: string): Promise<{ servers: ServerInfo[]; owner: ChildProcess; exited: Promise<number | null> }> {
    const moduleUrl = pathToFileURL(fileURLToPath(new URL('../../tools/local-servers.ts', import.meta.url))).href;
    const script = join(scratch, `owner-${Date.now()}.mts`);
    writeFileSync(
      script,
      [
        `import { startLocalPostgres, startLocalRedis } from ${JSON.stringify(moduleUrl)};`,
        `const [r, p] = await Promise.all([startLocalRedis({ appendonly: true }), startLocalPostgres()]);`,
        `process.stdout.write(JSON.stringify([{ pid: r.pid, dir: r.dir }, { pid: p.pid, dir: p.dir }]) + '\\n');`,
        body,
      ].join('\n'),
    );
    const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
    const owner = spawn(process.execPath, ['--import', 'tsx', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    owners.push(owner);
    let out = '';
    let err = '';
    owner.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => owner.once('exit', (code) => resolve(code)));
    const line = await new Promise<string>((resolve, reject) => {
      owner.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        const nl = out.indexOf('\n');
        if (nl >= 0) resolve(out.slice(0, nl));
      });
      void exited.then((code) => reject(new Error(`owner exited before printing (${String(code)}): ${err}`)));
    });
    const servers = JSON.parse(line) as ServerInfo[];
    expect(servers).toHaveLength(2);
    return { servers, owner, exited };
  }

  const allGone = (servers: ServerInfo[]) => () => servers.every((s) => !isAlive(s.pid) && !existsSync(s.dir));

  let scratch = '';
  const owners: ChildProcess[] = [];
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'local-servers-owner-'));
  });
  afterEach(() => {
    for (const owner of owners.splice(0)) owner.kill('SIGKILL');
    rmSync(scratch, { recursive: true, force: true });
  });

  it('when it is SIGKILLed, then its servers die and their temp dirs go', async () => {
    const { servers, owner } = await runOwner('setInterval(() => undefined, 1000);');
    for (const s of servers) expect(isAlive(s.pid)).toBe(true);

    owner.kill('SIGKILL');

    expect(await eventually(allGone(servers), 20_000), JSON.stringify(servers)).toBe(true);
  });

  it('when it exits without stopping its servers, then they die and their temp dirs go', async () => {
    const { servers, exited } = await runOwner('process.exit(0);');

    expect(await exited).toBe(0);
    expect(await eventually(allGone(servers), 20_000), JSON.stringify(servers)).toBe(true);
  });

  it('when it stops its servers, then nothing keeps it from exiting', async () => {
    const { servers, exited } = await runOwner(
      "await Promise.all([r.stop(), p.stop()]); process.stdout.write('stopped\\n');",
    );
    const stoppedAt = Date.now();

    expect(await exited).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(5_000);
    expect(allGone(servers)()).toBe(true);
  });
});

describe('resolveBinary', () => {
  it('when a binary is on PATH or in the Postgres bin dir, then it is found', () => {
    expect(resolveBinary('redis-server')).toMatch(/redis-server$/);
    expect(resolveBinary('pg_ctl')).toMatch(/pg_ctl$/);
  });

  it('when a binary exists nowhere, then the error names it', () => {
    expect(() => resolveBinary('no-such-server-binary')).toThrow(/no-such-server-binary was not found/);
  });
});

function listenOn(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
  });
}
