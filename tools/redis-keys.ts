// Removes what one service namespace left in Redis: its own keys (`<prefix>:…`) and its
// persistence partitions' (`{<prefix>:persist:<i>}:…` BullMQ queues and leases, `{<prefix>:persist}:members`,
// src/orders/queue.ts and partition-leases.ts), for tests, the load kit and the benchmark.
import { Redis } from 'ioredis';

/** The key patterns of everything a service run with REDIS_PREFIX=prefix writes. */
export function servicePatterns(prefix: string): string[] {
  return [`${prefix}:*`, `{${prefix}:persist*`];
}

/** The keys matching `pattern`, a SCAN page at a time (never KEYS: other runs share the server). */
export async function* scanPages(redis: Redis, pattern: string): AsyncGenerator<string[]> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (keys.length > 0) yield keys;
    cursor = next;
  } while (cursor !== '0');
}

/** Every key matching `pattern`, sorted. */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  for await (const keys of scanPages(redis, pattern)) found.push(...keys);
  return found.sort();
}

/** SCAN + UNLINK of every key of the namespace (never FLUSHALL: other runs share the server). */
export async function deleteServiceKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true });
  await redis.connect();
  try {
    for (const pattern of servicePatterns(prefix)) {
      for await (const keys of scanPages(redis, pattern)) await redis.unlink(...keys);
    }
  } finally {
    redis.disconnect();
  }
}
