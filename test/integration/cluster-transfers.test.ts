// Stock transfers on a real Redis Cluster (3 masters, 1 replica each), a 4-shard item whose shards
// sit on different masters: each step runs in its shard's slot, and with replica durability its
// WAIT rides the step's pipeline to that shard's master. Pulls from two instances racing sales
// and abandoned debits conserve the stock exactly; the replicas end with the same shards.
import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { shardKeys } from '../../src/stock/keys.ts';
import type { Scripts } from '../../src/stock/scripts/registry.ts';
import { transferOut } from '../../src/stock/scripts/transfer-out.ts';
import { StockTransfers } from '../../src/stock/transfers.ts';
import { masterForSlot, slotOf, startRedisCluster, type RedisCluster } from '../../tools/redis-cluster.ts';
import { shardFixture } from '../support/shard-fixture.ts';

const fx = shardFixture({ connections: 4 });
let cluster: RedisCluster;
const clusterClient = (options: { scaleReads?: 'slave' } = {}) =>
  new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), options);

beforeAll(async () => {
  cluster = await startRedisCluster();
  await fx.open(() => clusterClient());
}, 90_000);

afterAll(async () => {
  await fx.close();
  await cluster?.stop();
}, 60_000);

const K = 4;
const ACK = { replicas: 1, timeoutMs: 1_000 };
const SELL = `local a = tonumber(redis.call('HGET', KEYS[1], 'available') or '0')
local q = tonumber(ARGV[1])
if a < q then return 0 end
redis.call('HINCRBY', KEYS[1], 'available', -q)
return q`;

it(
  'when pulls with replica acks from two instances race sales and abandoned debits on a 4-shard item spread over 3 masters, ' +
    'then Σ stock + sold is conserved exactly, outPending ends at 0 and the replicas hold the same shards',
  async () => {
    const saleId = fx.newSaleId('cluster');
    // An item whose shards land on all three masters.
    const sku = Array.from({ length: 200 }, (_, i) => `hot-${i}`).find((candidate) => {
      const slots = Array.from({ length: K }, (_, k) => slotOf(shardKeys(fx.ctx.prefix, saleId, candidate, k).item));
      return new Set(slots.map((slot) => cluster.masters().findIndex((m) => m.slots.some(([a, b]) => slot >= a && slot <= b)))).size === 3;
    });
    expect(sku).toBeDefined();
    const masters = await Promise.all(Array.from({ length: K }, (_, k) => masterForSlot(cluster, slotOf(shardKeys(fx.ctx.prefix, saleId, sku!, k).item))));
    expect(new Set(masters.map((m) => m.port)).size).toBe(3);

    const initial = [90, 0, 35, 7];
    const start = initial.reduce((a, b) => a + b, 0);
    await fx.seed(saleId, sku!, initial, { held: 2 });
    const lanes = fx.poolScripts();
    const drivers = [new StockTransfers(lanes[0]!, { ack: ACK }), new StockTransfers(lanes[1]!, { ack: ACK })];
    const sell = (scripts: Scripts, shard: number, q: number) => scripts.client.eval(SELL, 1, shardKeys(fx.ctx.prefix, saleId, sku!, shard).item, q) as Promise<number>;
    let sold = 0;
    let pulled = 0;
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 120; i++) {
      const to = Math.floor(Math.random() * K);
      const pick = Math.random();
      if (pick < 0.45) work.push(drivers[i % 2]!.pullInto(saleId, sku!, K, to, 1 + Math.floor(Math.random() * 4)).then((n) => (pulled += n)));
      else if (pick < 0.92) work.push(sell(lanes[2 + (i % 2)]!, to, 1 + Math.floor(Math.random() * 2)).then((q) => (sold += q)));
      else work.push(transferOut(lanes[3]!, { saleId, sku: sku!, shard: (to + 1) % K }, { transferId: randomUUID(), to, want: 2, min: 1, now: Date.now() }, ACK));
    }
    await Promise.all(work);
    expect(pulled).toBeGreaterThan(0);
    expect((await fx.ledger(saleId, sku!, K)).stock + sold).toBe(start);

    await new StockTransfers(fx.scripts, { ack: ACK, now: () => Date.now() + 60_000 }).recover(saleId, sku!, K);
    const after = await fx.ledger(saleId, sku!, K);
    expect(after.outPending).toEqual([0, 0, 0, 0]);
    expect(after.available.every((units) => units >= 0)).toBe(true);
    expect(after.stock + sold).toBe(start);

    const replicas = clusterClient({ scaleReads: 'slave' });
    try {
      await expect.poll(() => fx.ledger(saleId, sku!, K, replicas), { timeout: 10_000 }).toEqual(after);
    } finally {
      replicas.disconnect();
    }
  },
  120_000,
);
