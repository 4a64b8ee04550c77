// Finding Redis and Postgres for the demo and the load kit: the URLs given, else the default local
// ports, else private servers started from the machine's binaries under .data/, else a clear
// message saying what to install.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { postgresAnswers, redisAnswers, resolveBinary, startLocalPostgres, startLocalRedis, type LocalServer } from './local-servers.ts';

export interface Services {
  readonly redisUrl: string;
  readonly postgresUrl: string;
  /** What was started here, stopped by stop(). */
  readonly started: readonly string[];
  stop(): Promise<void>;
}

export interface Wanted {
  /** Use this Redis as is (e.g. $REDIS_URL); undefined: look for one. */
  readonly redisUrl?: string | undefined;
  /** Use this Postgres server as is (e.g. $DATABASE_URL); undefined: look for one. */
  readonly postgresUrl?: string | undefined;
}

export const DEFAULT_REDIS = 'redis://127.0.0.1:6379';
export const DEFAULT_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';
/** Where servers started here keep their data, so a second run reuses them. */
export const DATA_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.data');

function binaryAvailable(name: string): boolean {
  try {
    resolveBinary(name);
    return true;
  } catch {
    return false;
  }
}

export class MissingServiceError extends Error {}

export async function reachServices(wanted: Wanted, log: (line: string) => void, dataDir = DATA_DIR): Promise<Services> {
  const servers: LocalServer[] = [];
  const started: string[] = [];
  const stop = async () => {
    for (const server of servers.reverse()) await server.stop();
  };
  try {
    const redisUrl = await (async () => {
      if (wanted.redisUrl) return wanted.redisUrl;
      if (await redisAnswers(DEFAULT_REDIS)) return DEFAULT_REDIS;
      if (!binaryAvailable('redis-server')) {
        throw new MissingServiceError('No Redis answers on 127.0.0.1:6379 and redis-server is not installed: set REDIS_URL, or install Redis 7 (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis).');
      }
      const dir = path.join(dataDir, 'redis');
      await mkdir(dir, { recursive: true });
      const server = await startLocalRedis({ dir });
      servers.push(server);
      started.push(`redis-server on port ${server.port} (data in ${dir})`);
      return server.url;
    })();
    const postgresUrl = await (async () => {
      if (wanted.postgresUrl) return wanted.postgresUrl;
      if (await postgresAnswers(DEFAULT_POSTGRES)) return DEFAULT_POSTGRES;
      if (!binaryAvailable('postgres') || !binaryAvailable('initdb')) {
        throw new MissingServiceError('No Postgres answers on 127.0.0.1:5432 and its binaries are not installed: set DATABASE_URL, or install PostgreSQL 15 (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15).');
      }
      const server = await startLocalPostgres({ dir: path.join(dataDir, 'postgres') });
      servers.push(server);
      started.push(`postgres on port ${server.port} (data in ${server.dir})`);
      return server.url;
    })();
    for (const line of started) log(`started ${line}`);
    return { redisUrl, postgresUrl, started, stop };
  } catch (error) {
    // A Redis started here must not outlive a Postgres that could not be found.
    await stop().catch(() => undefined);
    throw error;
  }
}

/** reachServices, then `work`, then stops whatever was started for it. */
export async function withServices<T>(wanted: Wanted, log: (line: string) => void, work: (services: Services) => Promise<T>): Promise<T> {
  const services = await reachServices(wanted, log);
  try {
    return await work(services);
  } finally {
    if (services.started.length > 0) {
      log('stopping the servers started for this run …');
      await services.stop();
    }
  }
}
