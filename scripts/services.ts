// Finding Redis and Postgres for the demo: the URLs in the environment, else the default local
// ports, else private servers started from the machine's binaries under .data/, else a clear
// message saying what to install.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  postgresAnswers,
  redisAnswers,
  resolveBinary,
  startLocalPostgres,
  startLocalRedis,
  type LocalServer,
} from '../test/support/local-servers.ts';

export interface Services {
  readonly redisUrl: string;
  readonly postgresUrl: string;
  /** What was started here, stopped by stop(). */
  readonly started: readonly string[];
  stop(): Promise<void>;
}

const DEFAULT_REDIS = 'redis://127.0.0.1:6379';
const DEFAULT_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

function binaryAvailable(name: string): boolean {
  try {
    resolveBinary(name);
    return true;
  } catch {
    return false;
  }
}

export class MissingServiceError extends Error {}

export async function reachServices(env: Record<string, string | undefined>, dataDir: string, log: (line: string) => void): Promise<Services> {
  const servers: LocalServer[] = [];
  const started: string[] = [];
  const redisUrl = await (async () => {
    if (env.REDIS_URL) return env.REDIS_URL;
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
    if (env.DATABASE_URL) return env.DATABASE_URL;
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
  return {
    redisUrl,
    postgresUrl,
    started,
    async stop() {
      for (const server of servers.reverse()) await server.stop();
    },
  };
}
