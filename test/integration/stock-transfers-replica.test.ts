// Replica durability for stock transfers on a private Redis: with a ReplicaAck, StockTransfers
// WAITs on the connection that ran each step. With no replica, a pull stops after the debit (a
// credit must not rest on a debit a failover could lose) and leaves it to recovery, so the stock
// is still whole; once a replica is online, recovery and pulls complete and the replica holds
// the same shards as the primary.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { StockTransfers, TransferNotDurable } from '../../src/stock/transfers.ts';
import { startLocalRedis, type LocalServer } from '../../tools/local-servers.ts';
import { shardFixture } from '../support/shard-fixture.ts';

const fx = shardFixture();
let primary: LocalServer;
let replica: LocalServer | undefined;

beforeAll(async () => {
  primary = await startLocalRedis();
  await fx.open(primary.url);
}, 60_000);

afterAll(async () => {
  await fx.close();
  await replica?.stop();
  await primary?.stop();
}, 30_000);

const ACK = { replicas: 1, timeoutMs: 50 };

it(
  'when no replica acknowledges the debit, then the pull stops before the credit and the stock stays whole; ' +
    'with a replica online, recovery and pulls complete and the replica holds the same shards',
  async () => {
    const saleId = fx.newSaleId('durable');
    await fx.seed(saleId, 'p', [0, 10]);
    await expect(new StockTransfers(fx.scripts, { ack: ACK }).pullInto(saleId, 'p', 2, 0, 1)).rejects.toThrow(TransferNotDurable);
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [0, 5], outPending: [0, 5], stock: 10 });

    replica = await startLocalRedis({ extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const deadline = Date.now() + 10_000;
    while (!/slave0:.*state=online/.test(await fx.redis.info('replication')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));

    const transfers = new StockTransfers(fx.scripts, { ack: { replicas: 1, timeoutMs: 2_000 }, now: () => Date.now() + 60_000 });
    expect(await transfers.recover(saleId, 'p', 2)).toBe(5);
    expect(await transfers.pullInto(saleId, 'p', 2, 0, 4)).toBe(4);
    const expected = { available: [9, 1], outPending: [0, 0], stock: 10 };
    expect(await fx.ledger(saleId, 'p', 2)).toEqual(expected);
    // Done is not waited for: give the replica its last write, then compare.
    await fx.redis.wait(1, 1_000);
    const onReplica = new Redis(replica.url);
    try {
      expect(await fx.ledger(saleId, 'p', 2, onReplica)).toEqual(expected);
    } finally {
      onReplica.disconnect();
    }
  },
  60_000,
);
