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

/**
 * How long a Cluster command waits out a master's failover before it fails. When a master dies,
 * its commands fail with "Connection is closed." (and, on the other masters, CLUSTERDOWN while
 * the cluster counts the dead node); ioredis re-reads the slot map and retries each one after a
 * delay, at most `maxRedirections` times. Its defaults (100 ms × 16 ≈ 1.6 s) give up before a
 * failover ends — the other masters take `cluster-node-timeout` to mark the master failed, the
 * replica about another second to be elected: 2.3–3 s with a 1 s node timeout, measured by
 * test/integration/cluster/failover-async.test.ts — and the request answered 500. 300 ms × 18 ≈ 5.4 s
 * covers about twice that, retrying within 300 ms of the promotion. It also bounds a request when
 * a master is gone for good: its command fails after one budget, or two when auto-pipelining
 * queued it behind a pipeline already retrying, and the request answers 503 REDIS_UNAVAILABLE.
 * A cluster run with a longer node timeout answers 503 during its failovers; a keyed retry is safe.
 */
const FAILOVER_RETRIES = {
  retryDelayOnFailover: 300,
  retryDelayOnClusterDown: 300,
  retryDelayOnTryAgain: 300,
  maxRedirections: 18,
} as const;

/**
 * How often a Cluster client re-reads the slot map on its own. ioredis re-reads it on a MOVED
 * reply, except in one case: an auto-pipeline mixing writes with reads (or failing in more than
 * one way) hands the MOVED to its callers and keeps the old map (redis/ioredis#2075). After a
 * failover or a reshard, a slot whose old master now answers MOVED then fails every such batch
 * for as long as no single command happens to repair the map: the failover drill saw the admin
 * report answer 503 REDIS_UNAVAILABLE for 30 s while orders flowed. Re-reading the map each
 * second bounds that to a second (one CLUSTER SLOTS a second per connection: nothing).
 */
const SLOTS_REFRESH_INTERVAL_MS = 1_000;

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
      slotsRefreshInterval: SLOTS_REFRESH_INTERVAL_MS,
      ...FAILOVER_RETRIES,
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

// What ioredis says when Redis is out of reach rather than refusing a command on its merits.
const UNAVAILABLE_MESSAGES = [
  'Connection is closed.',
  'Too many Cluster redirections',
  'Command timed out',
  "Stream isn't writeable",
  "Cluster isn't ready",
  'Failed to refresh slots cache',
  // A pipeline's commands still awaiting replies when its connection dropped.
  'Command aborted due to connection close',
  // An auto-pipeline holds commands of several slots that one master served; when a reshard or a
  // failover answers it MOVED (every command refused, none ran), ioredis re-sends it whole, and
  // refuses to once those slots sit on different masters. A keyed retry is then routed afresh.
  'All keys in the pipeline should belong to the same slots allocation group',
];
// Replies a server gives while it cannot serve: the cluster is failing over or lacks a slot's
// master (CLUSTERDOWN, TRYAGAIN, MASTERDOWN), a demoted master (READONLY), a restart (LOADING),
// or a redirection ioredis left to us (a pipeline with a write in it) still failing once retried.
const UNAVAILABLE_REPLIES = /^(CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|LOADING|MOVED|ASK)\b/;
const UNAVAILABLE_NAMES = new Set(['MaxRetriesPerRequestError', 'ClusterAllFailedError']);

/**
 * True when an error says Redis (or the cluster's master for a slot) could not be reached or
 * could not serve now: a transient outage, not a bug. The command may or may not have run.
 */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (UNAVAILABLE_NAMES.has(error.name)) return true;
  return UNAVAILABLE_REPLIES.test(error.message) || UNAVAILABLE_MESSAGES.some((text) => error.message.startsWith(text));
}

/**
 * The level a background round (sweeper, persister, transfer recovery) logs its failure at: warn
 * when Redis was only out of reach or moving (a failover, a reshard: the next round retries and
 * readiness tells the rest), error when it is something to look at.
 */
export function roundFailureLevel(error: unknown): 'warn' | 'error' {
  return isRedisUnavailable(error) ? 'warn' : 'error';
}
