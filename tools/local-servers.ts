// Private Redis and Postgres servers started from the machine's binaries: the integration
// harness's and the demo's fallback when no services are configured, and the real processes
// that fault-injection tests kill and restart.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants as fsConstants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import { findFreePort, listenOnce } from './free-port.ts';

export type LocalServerKind = 'redis' | 'postgres';

export interface LocalServer {
  readonly kind: LocalServerKind;
  /** redis://127.0.0.1:PORT or postgres://postgres@127.0.0.1:PORT/postgres */
  readonly url: string;
  readonly port: number;
  /** Redis: its working dir (AOF, nodes.conf). Postgres: its data directory. */
  readonly dir: string;
  /** Process id of the current (or last) server process; a restart changes it. */
  readonly pid: number;
  readonly running: boolean;
  /** The tail of the server's own log (stdout + stderr), across restarts. */
  logs(): string;
  /**
   * Sends `signal` (default SIGKILL) to the server and waits until it and its helper processes
   * are gone. With SIGKILL the helpers (Postgres backends, Redis forks) are SIGKILLed too: the
   * whole server crashes at once, as under the OOM killer or `docker kill`. No-op when not running.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and directory (stopping it first if it runs); waits until it answers. */
  restart(): Promise<void>;
  /** Graceful stop, then removes the directory if this module created it. Idempotent. */
  stop(): Promise<void>;
}

export interface LocalRedisOptions {
  /** Default: a free port. A given port is used as is (no retry on a clash). */
  port?: number;
  /** Default: a new temp dir, removed by stop(). A given dir is kept. */
  dir?: string;
  /** Default false: nothing survives a restart. True: AOF, so acknowledged writes survive a kill. */
  appendonly?: boolean;
  appendfsync?: 'always' | 'everysec' | 'no';
  /** Cluster mode; the single node is given all 16384 slots so it serves on its own. */
  clusterEnabled?: boolean;
  /**
   * With clusterEnabled: 'all' (default) as above; 'none' leaves the node empty and answering
   * PING, for `redis-cli --cluster create` to join with others (tools/redis-cluster.ts).
   */
  clusterSlots?: 'all' | 'none';
  extraArgs?: readonly string[];
  readyTimeoutMs?: number;
}

export interface LocalPostgresOptions {
  /** Default: a free port. A given port is used as is (no retry on a clash). */
  port?: number;
  /** Data directory. Default: a new temp dir, removed by stop(). A given dir is kept; initdb runs if it is empty. */
  dir?: string;
  /** Extra `-c name=value` settings. */
  settings?: Readonly<Record<string, string>>;
  readyTimeoutMs?: number;
}

const DEFAULT_READY_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 30_000;
const HELPER_EXIT_TIMEOUT_MS = 10_000;
const PROBE_TIMEOUT_MS = 3_000;
const LOG_LIMIT_CHARS = 64 * 1024;
const PID_FILE = '.local-server.pid';
const START_ATTEMPTS = 3;
const CLUSTER_BUS_OFFSET = 10_000;

/** Finds a binary on PATH, then in /usr/lib/postgresql/<version>/bin (newest first). */
export function resolveBinary(name: string): string {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== ''), ...postgresBinDirs()];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  throw new Error(
    `${name} was not found on PATH or in /usr/lib/postgresql/*/bin ` +
      '(install it, e.g. apt-get install -y redis-server postgresql)',
  );
}

export async function startLocalRedis(opts: LocalRedisOptions = {}): Promise<LocalServer> {
  const binary = resolveBinary('redis-server');
  const { dir, owned } = await prepareDir(opts.dir, 'flashsale-redis-');
  const spec: ServerSpec = {
    kind: 'redis',
    url: (port) => `redis://127.0.0.1:${port}`,
    command: binary,
    args: (port) => [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--daemonize', 'no',
      '--logfile', '',
      // No RDB snapshots: persistence is exactly what `appendonly` says.
      '--save', '',
      '--appendonly', opts.appendonly === true ? 'yes' : 'no',
      '--appendfsync', opts.appendfsync ?? 'everysec',
      '--maxmemory-policy', 'noeviction',
      ...(opts.clusterEnabled === true
        ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1']
        : []),
      ...(opts.extraArgs ?? []),
    ],
    cwd: dir,
    env: process.env,
    user: undefined,
    gracefulSignal: 'SIGTERM',
    // Nothing to flush when the owner is gone: the dir is removed right after.
    orphanSignal: 'SIGKILL',
    helpersLiveInDir: false,
    needsBusPort: opts.clusterEnabled === true,
    probe: async (port) => {
      if (!(await redisAnswers(`redis://127.0.0.1:${port}`))) return false;
      if (opts.clusterEnabled === true && opts.clusterSlots !== 'none') await assignAllSlots(port);
      return true;
    },
  };
  return launch(spec, dir, owned, opts.port, opts.readyTimeoutMs);
}

export async function startLocalPostgres(opts: LocalPostgresOptions = {}): Promise<LocalServer> {
  const postgres = resolveBinary('postgres');
  const initdb = siblingOrResolve(postgres, 'initdb');
  // Postgres refuses to run as root; run it (and initdb) as the postgres system user then.
  const user = process.getuid?.() === 0 ? lookupUser('postgres') : undefined;
  const { dir, owned } = await prepareDir(opts.dir, 'flashsale-pg-');
  try {
    if (user !== undefined) chownSync(dir, user.uid, user.gid);
    chmodSync(dir, 0o700);
    if (!existsSync(join(dir, 'PG_VERSION'))) await runInitdb(initdb, dir, user);
  } catch (err) {
    if (owned) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    // TCP only: no socket dir to create, own or clean up.
    unix_socket_directories: '',
    // Only an OS crash loses unsynced pages, and these servers die as processes, not machines.
    // synchronous_commit stays on so that a SIGKILL never loses an acknowledged commit.
    fsync: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    ...opts.settings,
  };
  const spec: ServerSpec = {
    kind: 'postgres',
    url: (port) => `postgres://postgres@127.0.0.1:${port}/postgres`,
    command: postgres,
    args: (port) => [
      '-D', dir,
      '-p', String(port),
      ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    ],
    cwd: dir,
    env: serverEnv(),
    user,
    // SIGINT is Postgres's "fast" shutdown; SIGTERM ("smart") would wait for every client to leave.
    gracefulSignal: 'SIGINT',
    // "Immediate" shutdown: the postmaster takes its backends down with it.
    orphanSignal: 'SIGQUIT',
    // Backends are their own process groups but all run in the data directory.
    helpersLiveInDir: true,
    needsBusPort: false,
    probe: (port) => postgresAnswers(`postgres://postgres@127.0.0.1:${port}/postgres`),
  };
  return launch(spec, dir, owned, opts.port, opts.readyTimeoutMs);
}

interface ServerSpec {
  kind: LocalServerKind;
  url: (port: number) => string;
  command: string;
  args: (port: number) => string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  user: PosixUser | undefined;
  gracefulSignal: NodeJS.Signals;
  orphanSignal: NodeJS.Signals;
  helpersLiveInDir: boolean;
  needsBusPort: boolean;
  /** True once the server serves requests; false (or a throw) while it is still coming up. */
  probe: (port: number) => Promise<boolean>;
}

interface PosixUser {
  uid: number;
  gid: number;
}

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

async function launch(
  spec: ServerSpec,
  dir: string,
  owned: boolean,
  fixedPort: number | undefined,
  readyTimeoutMs = DEFAULT_READY_TIMEOUT_MS,
): Promise<LocalServer> {
  const server = new ManagedServer(spec, dir, owned, readyTimeoutMs);
  try {
    for (let attempt = 1; ; attempt++) {
      const port = fixedPort ?? (await findFreePortFor(spec));
      const logBefore = server.logs().length;
      try {
        await server.startOn(port);
        return server;
      } catch (err) {
        // Another process may take a "free" port between the probe and the bind; pick again.
        const clash = /address already in use|could not bind/i.test(server.logs().slice(logBefore));
        if (fixedPort !== undefined || attempt >= START_ATTEMPTS || !clash) throw err;
      }
    }
  } catch (err) {
    await server.stop().catch(() => undefined);
    throw err;
  }
}

class ManagedServer implements LocalServer {
  readonly kind: LocalServerKind;
  readonly dir: string;
  #port = 0;
  #pid = 0;
  #child: ChildProcess | undefined;
  #exited: Promise<ExitInfo> | undefined;
  #running = false;
  #stopped = false;
  #log = '';
  #watchdog: ChildProcess | undefined;
  readonly #realDir: string;

  constructor(
    private readonly spec: ServerSpec,
    dir: string,
    private readonly ownsDir: boolean,
    private readonly readyTimeoutMs: number,
  ) {
    this.kind = spec.kind;
    this.dir = dir;
    this.#realDir = realpathSync(dir);
    live.add(this);
    installExitHook();
    this.#watchdog = spawnWatchdog(join(dir, PID_FILE), spec.orphanSignal, dir, ownsDir);
  }

  get url(): string {
    return this.spec.url(this.#port);
  }

  get port(): number {
    return this.#port;
  }

  get pid(): number {
    return this.#pid;
  }

  get running(): boolean {
    return this.#running;
  }

  logs(): string {
    return this.#log;
  }

  async startOn(port: number): Promise<void> {
    this.#port = port;
    await this.#spawnAndWait();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const exited = this.#exited;
    if (!this.#running || exited === undefined) return;
    signalPid(this.#pid, signal);
    await withTimeout(exited, EXIT_TIMEOUT_MS, () =>
      this.#failure(`did not exit within ${EXIT_TIMEOUT_MS} ms of ${signal}`),
    );
    await this.#reapHelpers(signal === 'SIGKILL');
  }

  async restart(): Promise<void> {
    if (this.#stopped) throw new Error(`${this.kind} on port ${this.#port} was stopped and cannot be restarted`);
    if (this.#running) await this.#shutdown();
    this.#appendLog(`\n--- restart on port ${this.#port} ---\n`);
    await this.#spawnAndWait();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      if (this.#running) await this.#shutdown();
      else await this.#reapHelpers(true);
    } finally {
      if (this.#watchdog?.pid !== undefined) signalGroup(this.#watchdog.pid, 'SIGKILL');
      this.#watchdog = undefined;
      if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
      live.delete(this);
    }
  }

  /** Called from the process 'exit' hook: synchronous, best effort; the watchdog finishes the job. */
  killNow(): void {
    if (this.#running) signalPid(this.#pid, this.spec.orphanSignal);
  }

  async #spawnAndWait(): Promise<void> {
    const { spec } = this;
    const child = spawn(spec.command, spec.args(this.#port), {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group: a Ctrl-C aimed at the test run does not hit it half-way, and
      // killing the group also takes any forked child (Redis AOF rewrite) with it.
      detached: true,
      ...(spec.user === undefined ? {} : { uid: spec.user.uid, gid: spec.user.gid }),
    });
    child.stdout?.on('data', (chunk: Buffer) => this.#appendLog(chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => this.#appendLog(chunk.toString('utf8')));
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => {
        this.#appendLog(`spawn failed: ${err.message}\n`);
        if (child.pid === undefined) resolve({ code: null, signal: null });
      });
    });
    const pidFile = join(this.dir, PID_FILE);
    void exited.then(() => {
      if (this.#child !== child) return;
      this.#running = false;
      rmSync(pidFile, { force: true });
    });
    this.#child = child;
    this.#exited = exited;
    if (child.pid === undefined) {
      await exited;
      throw this.#failure(`could not be spawned (${spec.command})`);
    }
    this.#pid = child.pid;
    this.#running = true;
    writeFileSync(pidFile, `${child.pid}\n`);
    try {
      await this.#waitReady(exited);
    } catch (err) {
      if (this.#running) {
        signalGroup(child.pid, 'SIGKILL');
        await exited;
      }
      await this.#reapHelpers(true).catch(() => undefined);
      throw err;
    }
  }

  async #waitReady(exited: Promise<ExitInfo>): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    let lastError = '';
    for (;;) {
      // Whatever answers on the port must answer in time: it may not even be our server.
      const probe = withTimeout(this.spec.probe(this.#port), PROBE_TIMEOUT_MS, () => new Error('probe timed out'));
      const outcome = await Promise.race<{ ok: boolean; error?: string } | { exit: ExitInfo }>([
        probe.then(
          (ok) => ({ ok }),
          (err: unknown) => ({ ok: false, error: err instanceof Error ? err.message : String(err) }),
        ),
        exited.then((exit) => ({ exit })),
      ]);
      if ('exit' in outcome) {
        const { code, signal } = outcome.exit;
        throw this.#failure(`exited while starting (code ${String(code)}, signal ${String(signal)})`);
      }
      if (outcome.ok) return;
      if (outcome.error !== undefined) lastError = outcome.error;
      if (Date.now() >= deadline) {
        const why = lastError === '' ? '' : ` (last probe error: ${lastError})`;
        throw this.#failure(`did not answer within ${this.readyTimeoutMs} ms${why}`);
      }
      await sleep(100);
    }
  }

  async #shutdown(): Promise<void> {
    const exited = this.#exited;
    if (exited === undefined) return;
    signalPid(this.#pid, this.spec.gracefulSignal);
    const done = await withTimeout(exited, EXIT_TIMEOUT_MS, () => new Error('no exit')).then(
      () => true,
      () => false,
    );
    if (!done) {
      this.#appendLog(`\n--- no exit ${EXIT_TIMEOUT_MS} ms after ${this.spec.gracefulSignal}; sending SIGKILL ---\n`);
      signalGroup(this.#pid, 'SIGKILL');
      await exited;
    }
    await this.#reapHelpers(!done);
  }

  /** Waits for processes the server left behind (forks, Postgres backends); SIGKILLs them when forced or late. */
  async #reapHelpers(force: boolean): Promise<void> {
    const leftovers = (): number[] => this.#helperPids();
    if (force) leftovers().forEach((pid) => signalPid(pid, 'SIGKILL'));
    const deadline = Date.now() + HELPER_EXIT_TIMEOUT_MS;
    let escalated = force;
    for (;;) {
      const pids = leftovers();
      if (pids.length === 0) return;
      if (Date.now() >= deadline) {
        if (escalated) throw this.#failure(`left processes behind: ${pids.join(', ')}`);
        pids.forEach((pid) => signalPid(pid, 'SIGKILL'));
        escalated = true;
      }
      await sleep(50);
    }
  }

  #helperPids(): number[] {
    if (this.#pid === 0) return [];
    return listProcesses().filter(
      (p) => p.pgrp === this.#pid || (this.spec.helpersLiveInDir && p.cwd() === this.#realDir),
    ).map((p) => p.pid);
  }

  #appendLog(text: string): void {
    this.#log += text;
    if (this.#log.length > LOG_LIMIT_CHARS) this.#log = this.#log.slice(-LOG_LIMIT_CHARS);
  }

  #failure(what: string): Error {
    const tail = this.#log.split('\n').slice(-80).join('\n');
    return new Error(`local ${this.kind} on port ${this.#port} (dir ${this.dir}) ${what}\n--- ${this.kind} log ---\n${tail}`);
  }
}

// Servers not yet stopped; killed on process exit so a test run that forgets stop() leaves no orphans.
const live = new Set<ManagedServer>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const server of live) server.killNow();
  });
}

// The 'exit' hook does not run when the process is SIGKILLed or dies of a signal. A detached
// shell per server waits for this process to go, then takes the server down and removes its
// temp dir. It reads the pid from a file that exists only while the server runs.
const WATCHDOG_SCRIPT = `
parent=$1 pidfile=$2 sig=$3 dir=$4 owned=$5
alive() { kill -0 "$1" 2>/dev/null && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }
while alive "$parent"; do sleep 0.5; done
pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -n "$pid" ]; then
  kill -"$sig" "$pid" 2>/dev/null
  n=0
  while alive "$pid" && [ "$n" -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
  kill -KILL "$pid" 2>/dev/null
  sleep 0.5
fi
if [ "$owned" = 1 ]; then rm -rf "$dir" || { sleep 1; rm -rf "$dir"; }; fi
`;

function spawnWatchdog(pidFile: string, signal: NodeJS.Signals, dir: string, owned: boolean): ChildProcess | undefined {
  const child = spawn(
    'sh',
    ['-c', WATCHDOG_SCRIPT, 'local-server-watchdog', String(process.pid), pidFile, signal.replace(/^SIG/, ''), dir, owned ? '1' : '0'],
    { cwd: '/', detached: true, stdio: 'ignore' },
  );
  child.on('error', () => undefined);
  child.unref();
  return child;
}

interface ProcessEntry {
  pid: number;
  pgrp: number;
  cwd: () => string | undefined;
}

/** Live (non-zombie) processes from /proc; empty where there is no /proc. */
function listProcesses(): ProcessEntry[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const entries: ProcessEntry[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // "pid (comm) state ppid pgrp …" — comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    const pgrp = Number(fields[2]);
    if (state === undefined || state === 'Z' || !Number.isInteger(pgrp)) continue;
    entries.push({
      pid: Number(name),
      pgrp,
      cwd: () => {
        try {
          return readlinkSync(`/proc/${name}/cwd`);
        } catch {
          return undefined;
        }
      },
    });
  }
  return entries;
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    signalPid(pgid, signal);
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when a Redis at this URL answers PING (used by the demo to find one, too). */
export async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
    commandTimeout: 1_000,
  });
  client.on('error', () => undefined); // refusals are expected while it starts
  try {
    await client.connect();
    // LOADING (replaying the AOF) is an error reply: not ready yet.
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** A fresh cluster node owns no slots; give it all of them and wait for cluster_state:ok. */
async function assignAllSlots(port: number): Promise<void> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const info = async (): Promise<string> => String(await client.call('CLUSTER', 'INFO'));
    // nodes.conf keeps the slots across restarts, so only a new node needs them.
    if (/cluster_slots_assigned:0\b/.test(await info())) await client.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    const deadline = Date.now() + 10_000;
    while (!/cluster_state:ok\b/.test(await info())) {
      if (Date.now() >= deadline) throw new Error('cluster_state did not become ok');
      await sleep(50);
    }
  } finally {
    client.disconnect();
  }
}

/** True when a Postgres at this URL answers a query (used by the demo to find one, too). */
export async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 1_000,
    query_timeout: 1_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    // "the database system is starting up" (crash recovery) fails here and is retried.
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function runInitdb(initdb: string, dir: string, user: PosixUser | undefined): Promise<void> {
  const child = spawn(
    initdb,
    ['-D', dir, '--username=postgres', '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-sync'],
    {
      cwd: dir,
      env: serverEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
    },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const result = await withTimeout(
    new Promise<ExitInfo | Error>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => resolve(err));
    }),
    60_000,
    () => {
      child.kill('SIGKILL');
      return new Error(`initdb timed out after 60 s\n${output}`);
    },
  );
  if (result instanceof Error) throw new Error(`initdb could not run (${initdb}): ${result.message}`);
  if (result.code !== 0) {
    const who = user === undefined ? '' : ` as uid ${user.uid}, which must be able to reach ${dir}`;
    throw new Error(`initdb failed (code ${String(result.code)}${who})\n${output}`);
  }
}

/** Postgres runs as another user: give it a small, predictable environment rather than ours. */
function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', TZ: 'UTC' };
}

async function prepareDir(given: string | undefined, prefix: string): Promise<{ dir: string; owned: boolean }> {
  if (given !== undefined) {
    mkdirSync(given, { recursive: true });
    return { dir: given, owned: false };
  }
  return { dir: await mkdtemp(join(tmpdir(), prefix)), owned: true };
}

async function findFreePortFor(spec: ServerSpec): Promise<number> {
  if (!spec.needsBusPort) return findFreePort();
  // Cluster mode also binds port + 10000 for the cluster bus.
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await findFreePort();
    const bus = port + CLUSTER_BUS_OFFSET;
    if (bus > 65_535) continue;
    try {
      await listenOnce(bus);
      return port;
    } catch {
      // Bus port taken; try another.
    }
  }
  throw new Error('no free port pair (port, port + 10000) found for a Redis cluster node');
}

function postgresBinDirs(): string[] {
  const root = '/usr/lib/postgresql';
  let versions: string[];
  try {
    versions = readdirSync(root);
  } catch {
    return [];
  }
  return versions
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((version) => join(root, version, 'bin'));
}

/** initdb must match the postgres that will run the cluster, so prefer the one next to it. */
function siblingOrResolve(binary: string, name: string): string {
  const sibling = join(dirname(realpathSync(binary)), name);
  return isExecutableFile(sibling) ? sibling : resolveBinary(name);
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function lookupUser(name: string): PosixUser {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error(`Postgres refuses to run as root and there is no '${name}' user to run it as`);
  }
}
