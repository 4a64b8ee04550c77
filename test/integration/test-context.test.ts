// The per-file test context cleans up after itself: its database goes, and so does every Redis key
// of its namespace — the service's own and the BullMQ queue's ({prefix:persist:<i>}), which other files
// sharing the server would otherwise find piling up.
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { createPersistQueue, PERSIST_JOB } from '../../src/orders/queue.ts';
import { databaseName, onServer } from '../../tools/databases.ts';
import { scanKeys } from '../../tools/redis-keys.ts';
import { createTestContext } from '../support/context.ts';

it('when a test context that queued a persist job is cleaned up, then none of its keys and not its database remain, and other keys stay', async () => {
  const ctx = await createTestContext();
  const other = new Redis(ctx.redisUrl);
  const neighbour = `${ctx.prefix}x:kept`;
  try {
    await other.set(`${ctx.prefix}:sale`, '1');
    await other.set(neighbour, '1');
    const persist = createPersistQueue(ctx.config);
    await persist.queue.add(PERSIST_JOB, { saleId: 's', entries: [] });
    await persist.close();
    expect(await scanKeys(other, `{${ctx.prefix}:persist:0}:*`)).not.toEqual([]);

    await ctx.cleanup();

    expect(await scanKeys(other, `${ctx.prefix}:*`)).toEqual([]);
    expect(await scanKeys(other, `{${ctx.prefix}:persist*`)).toEqual([]);
    expect(await other.exists(neighbour)).toBe(1);
    const found = await onServer(ctx.databaseUrl, (admin) => admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [databaseName(ctx.databaseUrl)]));
    expect(found.rowCount).toBe(0);
  } finally {
    await other.del(neighbour);
    other.disconnect();
  }
});
