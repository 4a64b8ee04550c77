// Redis connections: standalone (REDIS_URL) or Cluster (REDIS_CLUSTER_NODES), one factory for both.
// Each use gets its own connection: commands, pub/sub, BullMQ producer and BullMQ worker differ.
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.ts';

export type RedisClient = Redis | Cluster;

export interface ConnectionOptions {
  /** Shown in CLIENT LIST, to tell the connections apart when debugging. */
  readonly name: string;
  /** `null` for BullMQ workers (they block); a small number elsewhere so callers fail fast. */
  readonly maxRetriesPerRequest?: number | null;
  readonly enableOfflineQueue?: boolean;
  readonly lazyConnect?: boolean;
  /** Batches concurrent commands into one write: measured to pay off on the reserve path. */
  readonly enableAutoPipelining?: boolean;
}

export function createRedis(config: Pick<Config, 'redis'>, options: ConnectionOptions): RedisClient {
  const redisOptions: RedisOptions = {
    connectionName: options.name,
    maxRetriesPerRequest: options.maxRetriesPerRequest === undefined ? 2 : options.maxRetriesPerRequest,
    enableOfflineQueue: options.enableOfflineQueue ?? true,
    lazyConnect: options.lazyConnect ?? false,
    enableAutoPipelining: options.enableAutoPipelining ?? false,
    // Reconnect quickly but never give up: Redis restarts are survivable events.
    retryStrategy: (attempt) => Math.min(50 * attempt, 2_000),
  };
  const nodes = config.redis.clusterNodes;
  if (nodes && nodes.length > 0) {
    return new Cluster(nodes.map(({ host, port }) => ({ host, port })), {
      redisOptions,
      enableOfflineQueue: redisOptions.enableOfflineQueue,
      enableAutoPipelining: redisOptions.enableAutoPipelining,
      clusterRetryStrategy: (attempt) => Math.min(100 * attempt, 2_000),
    });
  }
  return new Redis(config.redis.url, redisOptions);
}

/** Closes a connection politely, falling back to a hard disconnect if Redis is gone. */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status === 'end') return;
  // QUIT would wait in the offline queue for a server that may never come back.
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}
