// A real Redis Cluster for tests: masters and replicas are redis-server processes from the
// machine's binaries (tools/local-servers.ts starts, kills, restarts and reaps each one), joined
// by `redis-cli --cluster create`. The faults the service must survive — a master SIGKILLed and
// failed over, slots resharded under traffic — are plain function calls.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { resolveBinary, startLocalRedis, type LocalServer } from './local-servers.ts';

export const SLOT_COUNT = 16_384;

export interface RedisClusterOptions {
  /** Default 3, the least `redis-cli --cluster create` accepts. */
  masters?: number;
  /** Default 1. */
  replicasPerMaster?: number;
  /** Default false. True: AOF, so a node's acknowledged writes survive its own restart. */
  appendonly?: boolean;
  appendfsync?: 'always' | 'everysec' | 'no';
  /** How long a silent node goes before it is failed; small so failover is quick. Default 1000. */
  nodeTimeoutMs?: number;
  extraArgs?: readonly string[];
  /** For start, and for each wait that the cluster settles afterwards. Default 60 000. */
  readyTimeoutMs?: number;
}

export type ClusterRole = 'master' | 'replica';
export type SlotRange = readonly [first: number, last: number];

export interface ClusterNode {
  readonly port: number;
  /** 127.0.0.1:PORT */
  readonly address: string;
  /** CLUSTER MYID: kept across restarts (nodes.conf). */
  readonly id: string;
  /** Role, master and slots as of the last topology read (start, refresh, failover, reshard, restart). */
  readonly role: ClusterRole;
  /** A replica's master's node id. */
  readonly masterId: string | undefined;
  readonly slots: readonly SlotRange[];
  /** Current (or last) process id; a restart changes it. */
  readonly pid: number;
  readonly running: boolean;
  readonly server: LocalServer;
}

export interface RedisCluster {
  readonly nodes: readonly ClusterNode[];
  /** "127.0.0.1:PORT,…" of every node: the service's REDIS_CLUSTER_NODES. */
  readonly seedNodes: string;
  masters(): ClusterNode[];
  replicasOf(master: ClusterNode | number): ClusterNode[];
  node(port: number): ClusterNode;
  /**
   * Waits until every live node agrees on the topology and reports cluster_state:ok, then reads it;
   * unless `replicas` is false, also until every running replica is in sync with its master.
   */
  refresh(options?: { replicas?: boolean }): Promise<void>;
  /** SIGKILLs every node and removes their directories. Idempotent. */
  stop(): Promise<void>;
}

export interface FailoverResult {
  promoted: ClusterNode;
  /** From the kill (killMaster) to the promoted replica serving with cluster_state:ok everywhere. */
  elapsedMs: number;
}

export interface ReshardResult {
  moved: number[];
  elapsedMs: number;
}

const DEFAULT_READY_TIMEOUT_MS = 60_000;
const CLI_TIMEOUT_MS = 120_000;
const POLL_MS = 100;

export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const replicasPerMaster = opts.replicasPerMaster ?? 1;
  if (masters < 3) throw new Error('redis-cli --cluster create needs at least 3 masters');
  const readyTimeoutMs = opts.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const extraArgs = [
    '--cluster-node-timeout', String(opts.nodeTimeoutMs ?? 1_000),
    // A replica fails over however long it has been cut off: tests kill at any moment.
    '--cluster-replica-validity-factor', '0',
    // The default 5 s wait for more replicas before a diskless full sync would dominate start.
    '--repl-diskless-sync-delay', '0',
    ...(opts.extraArgs ?? []),
  ];
  const starts = Array.from({ length: masters * (1 + replicasPerMaster) }, () =>
    startLocalRedis({
      clusterEnabled: true,
      clusterSlots: 'none',
      ...(opts.appendonly === undefined ? {} : { appendonly: opts.appendonly }),
      ...(opts.appendfsync === undefined ? {} : { appendfsync: opts.appendfsync }),
      extraArgs,
    }),
  );
  const outcomes = await Promise.allSettled(starts);
  const servers = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const cluster = new LocalCluster(servers, readyTimeoutMs);
  try {
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    const create = await redisCli([
      '--cluster', 'create', ...servers.map((s) => `127.0.0.1:${s.port}`),
      '--cluster-replicas', String(replicasPerMaster),
      '--cluster-yes',
    ]);
    if (create.code !== 0 || !create.output.includes('[OK] All 16384 slots covered')) {
      throw new Error(`redis-cli --cluster create failed (code ${String(create.code)}):\n${create.output}`);
    }
    await cluster.refresh();
    return cluster;
  } catch (err) {
    // The start's own error is the one worth reporting.
    await cluster.stop().catch(() => undefined);
    throw err;
  }
}

/** SIGKILLs a master's process (no shutdown, no goodbye to the cluster), as a crash would. */
export async function killMaster(cluster: RedisCluster, port: number): Promise<void> {
  const node = member(cluster, port);
  if (node.role !== 'master' || node.slots.length === 0) throw new Error(`node ${node.address} is not a master serving slots`);
  // What it served and who replicated it, as a refresh() after the failover no longer says.
  node.killed = { at: performance.now(), slots: node.slots, replicaIds: cluster.replicasOf(node).map((r) => r.id) };
  await node.server.kill('SIGKILL');
}

/**
 * Waits until a replica of the killed master is promoted: every live node sees it as a master
 * serving the old master's slots and reports cluster_state:ok, and it says role:master itself.
 */
export async function waitForFailover(cluster: RedisCluster, oldMasterPort: number, timeoutMs = 15_000): Promise<FailoverResult> {
  const old = member(cluster, oldMasterPort);
  const from = old.killed?.at ?? performance.now();
  const candidates = old.killed?.replicaIds ?? cluster.replicasOf(old).map((r) => r.id);
  if (candidates.length === 0) throw new Error(`master ${old.address} has no replica to promote`);
  const oldSlots = old.killed?.slots ?? old.slots;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const views = await liveViews(cluster);
    const promoted = candidates.find((id) =>
      views.every((v) => v.ok && v.nodes.some((n) => n.id === id && n.role === 'master' && !n.failing && sameSlots(n.slots, oldSlots))),
    );
    if (promoted !== undefined) {
      const node = cluster.nodes.find((n) => n.id === promoted)!;
      if ((await info(node.port, 'replication')).includes('role:master')) {
        const elapsedMs = Math.round(performance.now() - from);
        await cluster.refresh();
        return { promoted: node, elapsedMs };
      }
    }
    last = views.map((v) => `${v.port}: ${v.ok ? 'ok' : 'not ok'}`).join(', ');
    if (Date.now() >= deadline) throw new Error(`no replica of ${old.address} was promoted within ${timeoutMs} ms (${last})`);
    await sleep(POLL_MS);
  }
}

/** Starts a killed node again on its port and dir; an old master comes back as a replica of its successor. */
export async function restartNode(cluster: RedisCluster, port: number): Promise<ClusterNode> {
  const node = member(cluster, port);
  await node.server.restart();
  node.killed = undefined;
  await cluster.refresh();
  return node;
}

/**
 * Moves `slots` slots from one master to another with `redis-cli --cluster reshard` (keys
 * included, one MIGRATE batch at a time, clients redirected with ASK/MOVED), then waits until
 * `redis-cli --cluster check` is clean and every node agrees.
 */
export async function reshard(
  cluster: RedisCluster,
  move: { from: ClusterNode | number; to: ClusterNode | number; slots: number },
): Promise<ReshardResult> {
  const from = member(cluster, portOf(move.from));
  const to = member(cluster, portOf(move.to));
  const before = new Set(expand(from.slots));
  const started = performance.now();
  const result = await redisCli([
    '--cluster', 'reshard', to.address,
    '--cluster-from', from.id,
    '--cluster-to', to.id,
    '--cluster-slots', String(move.slots),
    '--cluster-yes',
  ]);
  if (result.code !== 0) throw new Error(`redis-cli --cluster reshard failed (code ${String(result.code)}):\n${result.output}`);
  await waitForCheck(to.address);
  await cluster.refresh({ replicas: false });
  const moved = expand(to.slots).filter((slot) => before.has(slot));
  return { moved, elapsedMs: Math.round(performance.now() - started) };
}

/**
 * Moves one given slot (keys included) to another master with `redis-cli --cluster reshard`. That
 * tool picks no slot by number: it moves the source's lowest slots first, so this moves every slot
 * of the source from its lowest up to `slot` — few when `slot` is near the start of a range.
 */
export async function reshardSlot(cluster: RedisCluster, slot: number, to: ClusterNode | number): Promise<ReshardResult & { from: ClusterNode }> {
  const from = await masterForSlot(cluster, slot);
  const target = member(cluster, portOf(to));
  if (from.port === target.port) throw new Error(`slot ${slot} is already on ${target.address}`);
  const count = expand(from.slots).filter((s) => s <= slot).length;
  const result = await reshard(cluster, { from, to: target, slots: count });
  if (!result.moved.includes(slot)) throw new Error(`redis-cli --cluster reshard moved ${result.moved.length} slots of ${from.address} but not ${slot}`);
  return { ...result, from };
}

/** The master that serves `slot`, as every live node agrees now. */
export async function masterForSlot(cluster: RedisCluster, slot: number): Promise<ClusterNode> {
  await cluster.refresh({ replicas: false }); // who serves a slot does not wait for replicas to catch up
  const master = cluster.masters().find((m) => m.slots.some(([first, last]) => slot >= first && slot <= last));
  if (master === undefined) throw new Error(`no master serves slot ${slot}`);
  return master;
}

/** The hash slot of a key, as Redis computes it: CRC16 (XMODEM) of its hash tag, or of the whole key. */
export function slotOf(key: string | Buffer): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  const open = bytes.indexOf(0x7b); // {
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    // Only a non-empty {…} is a tag; "{}" hashes the whole key.
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOT_COUNT;
  }
  return crc16(bytes) % SLOT_COUNT;
}

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!;
  return crc;
}

class Member implements ClusterNode {
  id = '';
  role: ClusterRole = 'master';
  masterId: string | undefined;
  slots: SlotRange[] = [];
  /** Set by killMaster: when (performance.now(), for the failover time) and what it served. */
  killed: { at: number; slots: SlotRange[]; replicaIds: string[] } | undefined;

  constructor(readonly server: LocalServer) {}

  get port(): number {
    return this.server.port;
  }

  get address(): string {
    return `127.0.0.1:${this.server.port}`;
  }

  get pid(): number {
    return this.server.pid;
  }

  get running(): boolean {
    return this.server.running;
  }
}

class LocalCluster implements RedisCluster {
  readonly nodes: readonly Member[];
  readonly seedNodes: string;
  #stopped = false;

  constructor(servers: readonly LocalServer[], private readonly readyTimeoutMs: number) {
    this.nodes = servers.map((s) => new Member(s));
    this.seedNodes = this.nodes.map((n) => n.address).join(',');
  }

  masters(): Member[] {
    return this.nodes.filter((n) => n.role === 'master' && n.slots.length > 0);
  }

  replicasOf(master: ClusterNode | number): Member[] {
    const id = member(this, portOf(master)).id;
    return this.nodes.filter((n) => n.role === 'replica' && n.masterId === id);
  }

  node(port: number): Member {
    const found = this.nodes.find((n) => n.port === port);
    if (found === undefined) throw new Error(`no cluster node on port ${port}`);
    return found;
  }

  async refresh(options: { replicas?: boolean } = {}): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    let why = '';
    for (;;) {
      why = await this.#unsettled(options.replicas ?? true);
      if (why === '') return;
      if (Date.now() >= deadline) throw new Error(`the cluster did not settle within ${this.readyTimeoutMs} ms: ${why}`);
      await sleep(POLL_MS);
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // SIGKILL first: a graceful master would wait for replicas that are being stopped too.
    await Promise.allSettled(this.nodes.map((n) => n.server.kill('SIGKILL')));
    const stops = await Promise.allSettled(this.nodes.map((n) => n.server.stop()));
    const failed = stops.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** '' when settled (and the topology read into the members), else what is still moving. */
  async #unsettled(replicas: boolean): Promise<string> {
    const views = await liveViews(this);
    const notOk = views.filter((v) => !v.ok).map((v) => v.port);
    if (notOk.length > 0) return `cluster_state not ok on ${notOk.join(', ')}`;
    const summaries = new Set(views.map((v) => summarize(v.nodes)));
    if (summaries.size !== 1) return 'nodes disagree about the topology';
    const view = views[0]!.nodes;
    for (const n of this.nodes) {
      const seen = view.find((v) => v.port === n.port);
      if (seen === undefined) return `${n.address} is not in the cluster yet`;
      n.id = seen.id;
      n.role = seen.role;
      n.masterId = seen.masterId;
      n.slots = seen.slots;
    }
    const covered = this.masters().reduce((sum, m) => sum + m.slots.reduce((s, [a, b]) => s + b - a + 1, 0), 0);
    if (covered !== SLOT_COUNT) return `${covered} of ${SLOT_COUNT} slots are served`;
    if (!replicas) return '';
    for (const replica of this.nodes.filter((n) => n.running && n.role === 'replica')) {
      const lag = await replicaLag(this, replica);
      if (lag !== '') return lag;
    }
    return '';
  }
}

/** '' when the replica's link is up, its sync done, and its master lists it online. */
async function replicaLag(cluster: LocalCluster, replica: Member): Promise<string> {
  // A node too busy to answer within the admin timeout (a loaded machine) is not settled yet: poll again.
  const mine = await info(replica.port, 'replication').catch(() => '');
  if (!mine.includes('master_link_status:up') || !mine.includes('master_sync_in_progress:0')) {
    return `replica ${replica.address} is not in sync yet`;
  }
  const master = cluster.nodes.find((n) => n.id === replica.masterId);
  if (master === undefined || !master.running) return `replica ${replica.address} has no live master`;
  const theirs = await info(master.port, 'replication').catch(() => '');
  if (!new RegExp(`ip=127\\.0\\.0\\.1,port=${replica.port},state=online`).test(theirs)) {
    return `master ${master.address} does not list ${replica.address} online yet`;
  }
  return '';
}

interface NodeLine {
  id: string;
  port: number;
  role: ClusterRole;
  masterId: string | undefined;
  failing: boolean;
  slots: SlotRange[];
}

interface NodeView {
  port: number;
  ok: boolean;
  nodes: NodeLine[];
}

/** What each running node says: cluster_state and CLUSTER NODES. */
async function liveViews(cluster: RedisCluster): Promise<NodeView[]> {
  const live = cluster.nodes.filter((n) => n.running);
  return Promise.all(
    live.map(async (n) => {
      try {
        return await withNode(n.port, async (client) => {
          const state = String(await client.call('CLUSTER', 'INFO'));
          const nodes = parseClusterNodes(String(await client.call('CLUSTER', 'NODES')));
          return { port: n.port, ok: /cluster_state:ok\b/.test(state), nodes };
        });
      } catch {
        return { port: n.port, ok: false, nodes: [] };
      }
    }),
  );
}

/** CLUSTER NODES: `<id> <ip:port@bus> <flags> <master|-> <ping> <pong> <epoch> <link> <slot>…`. */
function parseClusterNodes(text: string): NodeLine[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const [id = '', address = '', flags = '', master = '-', , , , , ...slots] = line.split(' ');
      const flagSet = flags.split(',');
      return {
        id,
        port: Number(/:(\d+)@/.exec(address)?.[1] ?? 0),
        role: flagSet.includes('slave') ? 'replica' : 'master',
        masterId: master === '-' ? undefined : master,
        failing: flagSet.includes('fail') || flagSet.includes('fail?'),
        // "[slot->-id]" / "[slot-<-id]" are migrations in progress, not ownership.
        slots: slots.filter((s) => !s.startsWith('[')).map((s) => {
          const [first, last = first] = s.split('-').map(Number) as [number, number?];
          return [first, last] as const;
        }),
      } satisfies NodeLine;
    });
}

/** Who serves what, ignoring link state and failure suspicions: equal once nodes agree. */
function summarize(nodes: readonly NodeLine[]): string {
  return nodes
    .map((n) => `${n.id} ${n.port} ${n.role} ${n.masterId ?? '-'} ${n.slots.map(([a, b]) => `${a}-${b}`).join(',')}`)
    .sort()
    .join('\n');
}

function sameSlots(a: readonly SlotRange[], b: readonly SlotRange[]): boolean {
  return expand(a).join(',') === expand(b).join(',');
}

function expand(ranges: readonly SlotRange[]): number[] {
  return ranges.flatMap(([first, last]) => Array.from({ length: last - first + 1 }, (_, i) => first + i)).sort((x, y) => x - y);
}

async function waitForCheck(address: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const check = await redisCli(['--cluster', 'check', address]);
    if (check.code === 0 && !/\[(ERR|WARNING)\]/.test(check.output)) return;
    if (Date.now() >= deadline) throw new Error(`redis-cli --cluster check still unclean after ${timeoutMs} ms:\n${check.output}`);
    await sleep(250);
  }
}

function member(cluster: RedisCluster, port: number): Member {
  return cluster.node(port) as Member;
}

function portOf(node: ClusterNode | number): number {
  return typeof node === 'number' ? node : node.port;
}

async function info(port: number, section: string): Promise<string> {
  return withNode(port, (client) => client.info(section));
}

/** A short-lived admin connection that fails at once rather than reconnecting. */
async function withNode<T>(port: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    // Generous: on a loaded machine (tests share 2 cores) a healthy node may take seconds to answer.
    connectTimeout: 3_000,
    commandTimeout: 5_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

async function redisCli(args: readonly string[], timeoutMs = CLI_TIMEOUT_MS): Promise<{ code: number | null; output: string }> {
  const child = spawn(resolveBinary('redis-cli'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (exitCode) => resolve(exitCode));
    });
    return { code, output };
  } finally {
    clearTimeout(timer);
  }
}
