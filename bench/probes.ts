// The processes whose CPU the bench charges to answers: the target's app (with its descendants),
// redis-server (its pid from INFO server), the whole Postgres cluster (the postmaster, found as
// the parent of our own backend, and every child of it), and wrk (which reports its own).
import { Redis } from 'ioredis';
import pg from 'pg';
import { commandName, parentPid, treeUsage, type TreeUsage } from './proc-cpu.ts';

export type ProbeName = 'app' | 'redis' | 'postgres';

export interface Probe {
  readonly name: ProbeName;
  readonly pid: number;
}

export async function redisServerPid(redisUrl: string): Promise<number> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error('INFO server gave no process_id');
    // A Redis in a container reports a pid of its own namespace: refuse to charge a stranger's CPU.
    if (!commandName(pid)?.startsWith('redis-server')) throw new Error(`Redis reports pid ${pid}, which is not a redis-server on this machine: the bench needs a local Redis`);
    return pid;
  } finally {
    redis.disconnect();
  }
}

export async function postmasterPid(postgresUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: postgresUrl });
  await client.connect();
  try {
    const backend = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    const postmaster = backend === undefined ? undefined : parentPid(backend);
    // A Postgres in a container reports a pid of its own namespace: refuse to charge a stranger's CPU.
    const local = backend !== undefined && commandName(backend) === 'postgres' && postmaster !== undefined && commandName(postmaster)?.startsWith('postgres');
    if (!local) throw new Error(`Postgres backend pid ${String(backend)} is not a postgres process on this machine: the bench needs a local Postgres`);
    return postmaster as number;
  } finally {
    await client.end();
  }
}

export type Snapshot = ReadonlyMap<ProbeName, TreeUsage>;

/** CPU ticks and run-queue wait of each probe's process tree now. */
export function snapshot(probes: readonly Probe[]): Snapshot {
  const usage = new Map<ProbeName, TreeUsage>();
  for (const probe of probes) {
    const value = treeUsage(probe.pid);
    if (value === undefined) throw new Error(`${probe.name} (pid ${probe.pid}) is gone: it exited or was stopped from outside the bench`);
    usage.set(probe.name, value);
  }
  return usage;
}
