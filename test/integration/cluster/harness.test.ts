// The real Redis Cluster that cluster tests run on (tools/redis-cluster.ts): three masters with
// a replica each, from the machine's binaries. It comes up whole and in sync, its slot routing
// is the one Redis computes, a reshard under traffic loses no write, a SIGKILLed master's
// replica takes over, and nothing is left behind.
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis, type ClusterOptions } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  SLOT_COUNT,
  killMaster,
  masterForSlot,
  reshard,
  reshardSlot,
  restartNode,
  slotOf,
  startRedisCluster,
  waitForFailover,
  type ClusterNode,
  type RedisCluster,
} from '../../../tools/redis-cluster.ts';

let cluster: RedisCluster;
// The cluster's node dirs live here, so the end can prove they are all gone.
let scratch: string;
const clients: (Redis | Cluster)[] = [];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'redis-cluster-harness-'));
  cluster = await inTmpdir(scratch, () => startRedisCluster());
});

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await cluster?.stop();
  removeIfEmpty(scratch);
});

it('starts three masters that share all slots, each with one replica in sync', async () => {
  const masters = cluster.masters();
  expect(masters).toHaveLength(3);
  expect(masters.reduce((sum, m) => sum + slotsOf(m).length, 0)).toBe(SLOT_COUNT);
  expect(cluster.seedNodes.split(',')).toEqual(cluster.nodes.map((n) => `127.0.0.1:${n.port}`));
  expect(new Set(cluster.nodes.map((n) => n.pid)).size).toBe(6);
  for (const master of masters) {
    expect(slotsOf(master).length).toBeGreaterThan(5_000);
    const replicas = cluster.replicasOf(master);
    expect(replicas).toHaveLength(1);
    const replication = await direct(replicas[0]!).info('replication');
    expect(replication).toContain('role:slave');
    expect(replication).toContain(`master_port:${master.port}`);
    expect(replication).toContain('master_link_status:up');
    expect(await direct(master).call('CLUSTER', 'MYID')).toBe(master.id);
  }
});

it('computes the slot of a key as Redis does, and knows which master serves it', async () => {
  const keys: (string | Buffer)[] = [
    '', 'a', 'foo', '{user1000}.following', 'foo{}{bar}', 'foo{{bar}}zap', 'foo{bar}{zap}', '{}', '}{', '{a',
    'fs:{0190a6c8-sale}:stock:c1', '{fs:bull}:persist-orders:meta', '秒杀{双十一}:库存',
    ...Array.from({ length: 200 }, (_, i) => Buffer.from(Array.from({ length: 1 + (i % 40) }, (_, j) => (i * 131 + j * 17) % 256))),
  ];
  const any = direct(cluster.masters()[0]!);
  for (const key of keys) expect(slotOf(key)).toBe(await any.call('CLUSTER', 'KEYSLOT', key));

  // A master asked for a key it does not serve redirects to the one masterForSlot names.
  for (const master of cluster.masters()) {
    const key = keyOnOtherMasterThan(master);
    const owner = await masterForSlot(cluster, slotOf(key));
    expect(owner.port).not.toBe(master.port);
    await expect(direct(master).get(key)).rejects.toThrow(`MOVED ${slotOf(key)} 127.0.0.1:${owner.port}`);
  }
});

it('an ioredis Cluster client spreads keys over all three masters', async () => {
  const client = clusterClient();
  const keys = Array.from({ length: 300 }, (_, i) => `spread:${i}`);
  await Promise.all(keys.map((key) => client.set(key, key)));
  await cluster.refresh();
  const owners = new Set<number>();
  for (const key of keys) {
    const slot = slotOf(key);
    const owner = cluster.masters().find((m) => m.slots.some(([first, last]) => slot >= first && slot <= last))!;
    // Read straight from the owner: no redirection could hide a key stored elsewhere.
    expect(await direct(owner).get(key)).toBe(key);
    owners.add(owner.port);
  }
  expect(owners.size).toBe(3);
});

it('WAIT on a healthy shard is acknowledged by its replica', async () => {
  for (const master of cluster.masters()) {
    const node = direct(master);
    await node.set(keyServedBy(master, 'wait'), 'v');
    expect(await node.call('WAIT', '1', '2000')).toBe(1);
  }
});

it('a reshard while writes flow loses no acknowledged write, and clients follow MOVED', async () => {
  const [from, to] = cluster.masters() as [ClusterNode, ClusterNode];
  // redis-cli moves a source's lowest slots first: keys in the first 300 cover moved and kept slots.
  const slots = slotsOf(from).slice(0, 300);
  const keys = slots.map((slot) => keyForSlot(slot, 'ctr'));
  const writer = clusterClient();
  const stale = clusterClient();
  await Promise.all([writer.get(keys[0]!), stale.get(keys[0]!)]);
  expect(stale.slots[slots[0]!]?.[0]).toBe(from.address);

  const acked = new Map<string, number>(keys.map((key) => [key, 0]));
  const errors: string[] = [];
  let flowing = true;
  let total = 0;
  const loops = Array.from({ length: 4 }, async (_, worker) => {
    for (let i = worker; flowing; i += 4) {
      const key = keys[i % keys.length]!;
      try {
        await writer.incr(key);
        acked.set(key, acked.get(key)! + 1);
        total++;
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  });
  await sleep(100);
  const before = total;
  const result = await reshard(cluster, { from, to, slots: 200 });
  const during = total - before;
  await sleep(100);
  flowing = false;
  await Promise.all(loops);

  expect(errors).toEqual([]);
  expect(during).toBeGreaterThan(0);
  expect(result.moved).toEqual(slots.slice(0, 200));
  for (const key of keys) expect(Number(await writer.get(key))).toBe(acked.get(key));
  for (const slot of result.moved.slice(0, 5)) expect((await masterForSlot(cluster, slot)).port).toBe(to.port);
  // A key in a moved slot now lives on the target, and a client that slept through the reshard
  // is redirected (MOVED) there and learns the new owner.
  expect(Number(await direct(to).get(keys[0]!))).toBe(acked.get(keys[0]!));
  expect(Number(await stale.get(keys[0]!))).toBe(acked.get(keys[0]!));
  expect(stale.slots[slots[0]!]?.[0]).toBe(to.address);
});

it('reshardSlot moves one chosen slot, with its keys, to another master', async () => {
  const [to, , from] = cluster.masters() as [ClusterNode, ClusterNode, ClusterNode];
  const lowest = slotsOf(from).slice(0, 10);
  const slot = lowest[9]!;
  const key = keyForSlot(slot, 'chosen');
  await direct(from).set(key, 'here');
  const result = await reshardSlot(cluster, slot, to);
  expect(result.from.port).toBe(from.port);
  // redis-cli takes the source's lowest slots: the chosen one is the tenth.
  expect(result.moved).toEqual(lowest);
  expect((await masterForSlot(cluster, slot)).port).toBe(to.port);
  expect(await direct(to).get(key)).toBe('here');
  await expect(reshardSlot(cluster, slot, to)).rejects.toThrow(/already on/);
});

it('when a master is SIGKILLed, its replica is promoted and writes resume', async () => {
  const victim = cluster.masters()[2]!;
  const heir = cluster.replicasOf(victim)[0]!;
  const key = keyServedBy(victim, 'durable');
  const later = keyServedBy(victim, 'after');
  const client = clusterClient();
  await client.set(key, 'kept');
  // Acknowledged by the replica before the crash: the failover must keep it.
  expect(await direct(victim).call('WAIT', '1', '2000')).toBe(1);

  const pid = victim.pid;
  await killMaster(cluster, victim.port);
  expect(isAlive(pid)).toBe(false);
  const failover = await waitForFailover(cluster, victim.port, 15_000);
  expect(failover.promoted.port).toBe(heir.port);
  expect(failover.elapsedMs).toBeLessThan(15_000);
  expect(await direct(heir).info('replication')).toContain('role:master');
  expect((await masterForSlot(cluster, slotOf(key))).port).toBe(heir.port);

  expect(await eventually(() => client.incr(later), 10_000)).toBe(1);
  expect(await client.get(key)).toBe('kept');

  // The old master comes back as its successor's replica, and the shard is redundant again.
  const back = await restartNode(cluster, victim.port);
  expect(back.role).toBe('replica');
  expect(back.masterId).toBe(heir.id);
  expect(await direct(heir).call('WAIT', '1', '5000')).toBe(1);
});

it('stop() leaves no redis-server process and no directory behind', async () => {
  const pids = cluster.nodes.map((n) => n.pid);
  await cluster.stop();
  expect(pids.filter(isAlive)).toEqual([]);
  expect(readdirSync(scratch)).toEqual([]);
  expect(processesIn(scratch)).toEqual([]);
});

it('a start that fails half-way stops the nodes it started and removes their directories', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-failed-'));
  try {
    // The nodes start and answer PING, then `redis-cli --cluster create` finds no CLUSTER command.
    const start = inTmpdir(dir, () => startRedisCluster({ extraArgs: ['--rename-command', 'CLUSTER', ''] }));
    await expect(start).rejects.toThrow(/cluster create failed/);
    expect(readdirSync(dir)).toEqual([]);
    expect(processesIn(dir)).toEqual([]);
  } finally {
    removeIfEmpty(dir);
  }
});

/**
 * Removes a scratch dir only when empty: node dirs left in it hold the pid files that the
 * local-servers watchdogs need to kill what a failed test leaked, once this process exits.
 */
function removeIfEmpty(dir: string | undefined): void {
  if (dir === undefined) return;
  try {
    rmdirSync(dir);
  } catch {
    // Not empty: the watchdogs remove the node dirs; an empty scratch dir may remain.
  }
}

/** Runs `start` with os.tmpdir() pointing at `dir`, where the nodes make their directories. */
async function inTmpdir<T>(dir: string, start: () => Promise<T>): Promise<T> {
  const saved = process.env['TMPDIR'];
  process.env['TMPDIR'] = dir;
  try {
    return await start();
  } finally {
    if (saved === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = saved;
  }
}

function clusterClient(options: ClusterOptions = {}): Cluster {
  const client = new Cluster(
    cluster.seedNodes.split(',').map((seed) => ({ host: '127.0.0.1', port: Number(seed.split(':')[1]) })),
    options,
  );
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

const directClients = new Map<number, Redis>();

/** A plain connection to one node: no redirection, so it shows where a key really lives. */
function direct(node: ClusterNode): Redis {
  let client = directClients.get(node.port);
  if (client === undefined || client.status === 'end') {
    client = new Redis({ host: '127.0.0.1', port: node.port, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    directClients.set(node.port, client);
    clients.push(client);
  }
  return client;
}

function slotsOf(master: ClusterNode): number[] {
  return master.slots.flatMap(([first, last]) => Array.from({ length: last - first + 1 }, (_, i) => first + i));
}

// Key searches are synchronous: bounded, so a broken slotOf fails the test instead of freezing it.
const SEARCH_LIMIT = 2_000_000;

/** A key `<prefix>:<n>` in exactly this slot. */
function keyForSlot(slot: number | undefined, prefix: string): string {
  return findKey(prefix, (s) => s === slot);
}

function findKey(prefix: string, wanted: (slot: number) => boolean): string {
  for (let n = 0; n < SEARCH_LIMIT; n++) {
    const key = `${prefix}:${n}`;
    if (wanted(slotOf(key))) return key;
  }
  throw new Error(`no key ${prefix}:<n> falls in the wanted slots`);
}

function keyServedBy(master: ClusterNode, prefix: string): string {
  return keyForSlot(slotsOf(master)[0]!, prefix);
}

function keyOnOtherMasterThan(master: ClusterNode): string {
  const mine = new Set(slotsOf(master));
  return findKey('elsewhere', (slot) => !mine.has(slot));
}

async function eventually<T>(attempt: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await sleep(100);
    }
  }
}

/** Alive and not a zombie. */
function isAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Live processes whose working directory is (or was, before removal) under `dir`. */
function processesIn(dir: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readlinkSync(`/proc/${name}/cwd`).startsWith(dir) && isAlive(Number(name));
      } catch {
        return false;
      }
    })
    .map(Number);
}
