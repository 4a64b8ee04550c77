// Starts the service under test as a child process (`node --import tsx src/main.ts all`, which
// migrates first) on free ports, with its own Redis prefix and, unless told otherwise, a fresh database.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createDatabase, dropDatabase } from '../tools/databases.ts';
import { findFreePort } from '../tools/free-port.ts';
import { deleteServiceKeys } from '../tools/redis-keys.ts';
import { spawnTs, waitForHttp } from '../tools/processes.ts';

export interface ServiceOptions {
  readonly redisUrl: string;
  /** A database on the server to use; with freshDatabase, only the server to create one on. */
  readonly databaseUrl: string;
  readonly freshDatabase: boolean;
  /** Default: a fresh one, removed afterwards with the fresh database unless keep is set. */
  readonly redisPrefix: string | undefined;
  readonly jwtSecret: string;
  readonly logDir: string;
  readonly keep: boolean;
  /** Extra settings for the service (e.g. SHED_EVENT_LOOP_DELAY_MS=0 in tests on a busy machine). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface StartedService {
  readonly origin: string;
  readonly databaseUrl: string;
  readonly redisPrefix: string;
  /** Stops the process (gracefully: in-flight requests and jobs finish). */
  stop(): Promise<void>;
  /** Drops what the kit created for it (fresh database, fresh prefix's keys) unless told to keep them. */
  cleanup(): Promise<void>;
}

export async function startServiceProcess(options: ServiceOptions): Promise<StartedService> {
  const tag = randomBytes(4).toString('hex');
  const database = `loadtest_${tag}`;
  const databaseUrl = options.freshDatabase ? await createDatabase(options.databaseUrl, database) : options.databaseUrl;
  const ownsPrefix = options.redisPrefix === undefined;
  const redisPrefix = options.redisPrefix ?? `lt${tag}`;

  const [port, metricsPort] = [await findFreePort(), await findFreePort()];
  const child = spawnTs(
    'service',
    'src/main.ts',
    ['all'],
    {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      REDIS_URL: options.redisUrl,
      REDIS_CLUSTER_NODES: '',
      REDIS_PREFIX: redisPrefix,
      DATABASE_URL: databaseUrl,
      JWT_SECRET: options.jwtSecret,
      RATE_LIMIT_USER_PER_SEC: '0',
      LOG_LEVEL: 'warn',
      ...options.env,
    },
    join(options.logDir, 'service.log'),
  );
  const origin = `http://127.0.0.1:${port}`;
  const cleanup = async () => {
    if (options.keep) return;
    if (options.freshDatabase) await dropDatabase(databaseUrl);
    if (ownsPrefix) await deleteServiceKeys(options.redisUrl, redisPrefix);
  };
  try {
    await waitForHttp(child, `${origin}/health/ready`);
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
  return {
    origin,
    databaseUrl,
    redisPrefix,
    stop: () => child.stop(),
    cleanup,
  };
}
