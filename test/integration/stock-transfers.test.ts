// StockTransfers and the worker's TransferRecovery against real Redis, on item shards written
// directly: totals in one read, pulls from the richest donors, single flight per target shard,
// stale transfers recovered before a pull; many pulls from two instances (two processes) over
// several connections racing sales and abandoned drivers conserve the stock exactly; and a
// driver abandoned after its debit is finished, once, by the sweeper.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { startService } from '../../src/service.ts';
import { saleDefinition, saleItem } from '../support/lua-fixtures.ts';
import type { Scripts } from '../../src/stock/scripts/registry.ts';
import { transferOut } from '../../src/stock/scripts/transfer-out.ts';
import { TransferRecovery, anchoredItems } from '../../src/stock/transfer-recovery.ts';
import { StockTransfers } from '../../src/stock/transfers.ts';
import { anchorKey, decodeKeyPart, encodeKeyPart } from '../../src/stock/keys.ts';
import { shardFixture } from './../support/shard-fixture.ts';

const fx = shardFixture({ connections: 6 });
beforeAll(() => fx.open());
afterAll(() => fx.close());

const logger = createLogger({ logLevel: 'silent' });
/** A clock far enough ahead that every transfer made so far is stale. */
const later = () => Date.now() + 60_000;

// A shopper's sale on one shard, as the reserve script takes stock: never below zero.
const SELL = `local a = tonumber(redis.call('HGET', KEYS[1], 'available') or '0')
local q = tonumber(ARGV[1])
if a < q then return 0 end
redis.call('HINCRBY', KEYS[1], 'available', -q)
return q`;
const sell = (scripts: Scripts, saleId: string, sku: string, shard: number, quantity: number) =>
  scripts.client.eval(SELL, 1, fx.keys(saleId, sku, shard).item, quantity) as Promise<number>;

describe('StockTransfers', () => {
  it('when totals are read, then every shard answers available, outPending and delisted, and shard 0 its held units', async () => {
    const saleId = fx.newSaleId('totals');
    await fx.seed(saleId, 'p', [3, 0, 7], { held: 5 });
    await fx.redis.hset(fx.keys(saleId, 'p', 1).item, 'outPending', 2, 'delisted', 'low_stock');
    expect(await new StockTransfers(fx.scripts).totals(saleId, 'p', 3)).toEqual({ available: [3, 0, 7], outPending: [0, 2, 0], delisted: ['', 'low_stock', ''], held: 5 });
  });

  it('when a dry shard pulls, then the richest donor gives half its stock (or the need, if more), capped at what it holds, and the total stays', async () => {
    const saleId = fx.newSaleId('pull');
    await fx.seed(saleId, 'p', [0, 10, 3, 1]);
    const transfers = new StockTransfers(fx.scripts);
    // need 1: the richest (10) gives ceil(10/2) = 5.
    expect(await transfers.pullInto(saleId, 'p', 4, 0, 1)).toBe(5);
    expect(await fx.ledger(saleId, 'p', 4)).toEqual({ available: [5, 5, 3, 1], outPending: [0, 0, 0, 0], stock: 14 });
    // need 12 into shard 3: 5 from shard 0, 5 from shard 1, 2 of shard 2's 3 (max(need left 2, ceil(3/2)=2)).
    expect(await transfers.pullInto(saleId, 'p', 4, 3, 12)).toBe(12);
    expect(await fx.ledger(saleId, 'p', 4)).toEqual({ available: [0, 0, 1, 13], outPending: [0, 0, 0, 0], stock: 14 });
    // Nothing elsewhere: 0 moved.
    await fx.seed(saleId, 'q', [0, 0]);
    expect(await transfers.pullInto(saleId, 'q', 2, 1, 3)).toBe(0);
  });

  it('when pulls into one shard overlap in one process, then they share one flight; another target shard gets its own', async () => {
    const saleId = fx.newSaleId('single-flight');
    await fx.seed(saleId, 'p', [0, 0, 40]);
    const transfers = new StockTransfers(fx.scripts);
    const [a, b, c] = await Promise.all([transfers.pullInto(saleId, 'p', 3, 0, 1), transfers.pullInto(saleId, 'p', 3, 0, 1), transfers.pullInto(saleId, 'p', 3, 1, 1)]);
    expect([a, b]).toEqual([20, 20]);
    expect(c).toBeGreaterThan(0);
    expect(await fx.ledger(saleId, 'p', 3)).toEqual({ available: [20, c, 20 - c], outPending: [0, 0, 0], stock: 40 });
    expect(await fx.redis.hlen(fx.keys(saleId, 'p', 2).transfersOut)).toBe(2);
  });

  it('when a pull meets outPending left by a dead driver, then it recovers those units first and they can be pulled', async () => {
    const saleId = fx.newSaleId('recover-first');
    await fx.seed(saleId, 'p', [0, 6, 0]);
    // A driver debited shard 1 towards shard 2 three seconds ago and died.
    await transferOut(fx.scripts, { saleId, sku: 'p', shard: 1 }, { transferId: randomUUID(), to: 2, want: 6, min: 1, now: Date.now() - 3_000 });
    expect(await fx.ledger(saleId, 'p', 3)).toMatchObject({ available: [0, 0, 0], outPending: [0, 6, 0] });
    expect(await new StockTransfers(fx.scripts).pullInto(saleId, 'p', 3, 0, 2)).toBe(3);
    expect(await fx.ledger(saleId, 'p', 3)).toEqual({ available: [3, 0, 3], outPending: [0, 0, 0], stock: 6 });
  });

  it('when a credit reopens a dry listed shard, then onReopened names it', async () => {
    const saleId = fx.newSaleId('reopened');
    await fx.seed(saleId, 'p', [0, 4]);
    const reopened: unknown[] = [];
    await new StockTransfers(fx.scripts, { onReopened: (...args) => reopened.push(args) }).pullInto(saleId, 'p', 2, 0, 1);
    expect(reopened).toEqual([[saleId, 'p', 0]]);
  });

  it('when the target is not a shard of the item, then pullInto refuses', async () => {
    await expect(new StockTransfers(fx.scripts).pullInto('s', 'p', 2, 2, 1)).rejects.toThrow(RangeError);
  });
});

describe('concurrency', () => {
  it(
    'when many pulls from two instances over several connections race sales and drivers abandoned after their debit, ' +
      'then no shard goes negative and, after recovery, Σ stock + sold is the initial stock exactly with outPending 0',
    async () => {
      for (let run = 0; run < 3; run++) {
        const saleId = fx.newSaleId(`race-${run}`);
        const K = 4;
        // 400 units split at random (a shard may start empty); sales take at most ~300, so pulls find stock.
        const cuts = [0, ...Array.from({ length: K - 1 }, () => Math.floor(Math.random() * 401)).sort((a, b) => a - b), 400];
        const initial = cuts.slice(1).map((cut, k) => cut - cuts[k]!);
        const start = initial.reduce((a, b) => a + b, 0);
        await fx.seed(saleId, 'hot', initial, { held: 3 });
        const lanes = fx.poolScripts();
        // Two "processes": each its own StockTransfers (own single-flight map), over three connections each.
        const processes = [lanes.slice(0, 3), lanes.slice(3, 6)].map((conns) => conns.map((scripts) => new StockTransfers(scripts)));
        let sold = 0;
        let abandoned = 0;
        let pulled = 0;
        const work: Promise<unknown>[] = [];
        for (let i = 0; i < 240; i++) {
          const lane = i % 3;
          const pick = Math.random();
          const to = Math.floor(Math.random() * K);
          const scripts = lanes[i % lanes.length]!;
          if (pick < 0.45) work.push(processes[i % 2]![lane]!.pullInto(saleId, 'hot', K, to, 1 + Math.floor(Math.random() * 5)).then((n) => (pulled += n)));
          else if (pick < 0.9) work.push(sell(scripts, saleId, 'hot', to, 1 + Math.floor(Math.random() * 3)).then((q) => (sold += q)));
          else {
            // A driver that debits and dies: its units wait in outPending for recovery.
            const donor = (to + 1) % K;
            work.push(
              transferOut(scripts, { saleId, sku: 'hot', shard: donor }, { transferId: randomUUID(), to, want: 3, min: 1, now: Date.now() }).then((out) => {
                if (out.reply.code === 'OK') abandoned += out.reply.quantity;
              }),
            );
          }
        }
        // Sampled while the race runs: no shard's available or outPending is ever seen below zero.
        const negatives: number[][] = [];
        let racing = true;
        const watcher = (async () => {
          while (racing) {
            const seen = await fx.ledger(saleId, 'hot', K);
            if ([...seen.available, ...seen.outPending].some((units) => units < 0)) negatives.push([...seen.available, ...seen.outPending]);
          }
        })();
        await Promise.all(work);
        racing = false;
        await watcher;
        expect(negatives).toEqual([]);
        const before = await fx.ledger(saleId, 'hot', K);
        expect(before.stock + sold).toBe(start);
        // The race did race: units moved and sold (shared flights count their units once per caller).
        expect(pulled).toBeGreaterThan(0);
        expect(sold).toBeGreaterThan(0);
        expect(before.available.every((units) => units >= 0)).toBe(true);
        expect(before.outPending.reduce((a, b) => a + b, 0)).toBe(abandoned);

        await new StockTransfers(fx.scripts, { now: later }).recover(saleId, 'hot', K);
        const after = await fx.ledger(saleId, 'hot', K);
        expect(after.outPending).toEqual([0, 0, 0, 0]);
        expect(after.available.every((units) => units >= 0)).toBe(true);
        expect(after.stock + sold).toBe(start);
        expect(Number(await fx.field(saleId, 'hot', 0, 'held'))).toBe(3);
      }
    },
  );
});

describe('TransferRecovery', () => {
  it('when a driver is abandoned after its debit, then one sweeper round lands the units on the target once, and another round changes nothing', async () => {
    const saleId = fx.newSaleId('sweeper');
    await fx.seed(saleId, 'p', [9, 0, 0]);
    await fx.redis.hset(anchorKey(fx.ctx.prefix, saleId), `shards:${encodeKeyPart('p')}`, 3);
    const transferId = randomUUID();
    await transferOut(fx.scripts, { saleId, sku: 'p', shard: 0 }, { transferId, to: 2, want: 4, min: 1, now: Date.now() });

    const items = anchoredItems(fx.redis, fx.ctx.prefix, async () => [saleId]);
    expect(await items()).toEqual([{ saleId, sku: 'p', shards: 3 }]);
    const sweeper = new TransferRecovery(new StockTransfers(fx.scripts, { now: later }), items, logger);
    const sweeperTwo = new TransferRecovery(new StockTransfers(fx.poolScripts()[0]!, { now: later }), items, logger);
    expect((await Promise.all([sweeper.runOnce(), sweeperTwo.runOnce()])).reduce((a, b) => a + b, 0)).toBe(4);
    expect(await fx.ledger(saleId, 'p', 3)).toEqual({ available: [5, 0, 4], outPending: [0, 0, 0], stock: 9 });
    expect(await sweeper.runOnce()).toBe(0);
    expect(await fx.ledger(saleId, 'p', 3)).toEqual({ available: [5, 0, 4], outPending: [0, 0, 0], stock: 9 });
    expect(await fx.redis.hget(fx.keys(saleId, 'p', 2).transfersIn, transferId)).toBe('4');
  });

  it('when started, then it finishes an abandoned transfer on its own once the transfer is stale', async () => {
    const saleId = fx.newSaleId('sweeper-timer');
    await fx.seed(saleId, 'p', [4, 0]);
    await transferOut(fx.scripts, { saleId, sku: 'p', shard: 0 }, { transferId: randomUUID(), to: 1, want: 4, min: 1, now: Date.now() });
    const sweeper = new TransferRecovery(new StockTransfers(fx.scripts, { staleMs: 200 }), async () => [{ saleId, sku: 'p', shards: 2 }], logger, 50);
    sweeper.start();
    try {
      await expect.poll(async () => (await fx.ledger(saleId, 'p', 2)).available, { timeout: 5_000 }).toEqual([0, 4]);
    } finally {
      await sweeper.stop();
    }
    expect((await fx.ledger(saleId, 'p', 2)).outPending).toEqual([0, 0]);
  });

  it('when a worker process runs, then its sweeper finishes a transfer abandoned on a live sale', async () => {
    const worker = await startService(fx.ctx.config, logger, 'worker');
    try {
      const sale = saleDefinition(fx.newSaleId('worker'), [saleItem({ sku: 'w' })], Date.now());
      expect(await worker.sales.create(sale)).toMatchObject({ sale: { id: sale.id } });
      // The item's 2 shards and the anchor's K as the layout-2 loader leaves them.
      await fx.seed(sale.id, 'w', [6, 0]);
      await fx.redis.hset(anchorKey(fx.ctx.prefix, sale.id), `shards:${encodeKeyPart('w')}`, 2);
      await transferOut(fx.scripts, { saleId: sale.id, sku: 'w', shard: 0 }, { transferId: randomUUID(), to: 1, want: 3, min: 1, now: Date.now() - 5_000 });
      await expect.poll(async () => fx.ledger(sale.id, 'w', 2), { timeout: 10_000 }).toEqual({ available: [3, 3], outPending: [0, 0], stock: 6 });
    } finally {
      await worker.stop();
    }
  });

  it('when an anchor field names an encoded SKU, then it decodes back to the SKU, and a malformed one is skipped', () => {
    for (const sku of ['phone-x', 'a:b{c}', 'テレビ 55"', 'x%y']) expect(decodeKeyPart(encodeKeyPart(sku))).toBe(sku);
    expect(decodeKeyPart('%E3%8')).toBeUndefined();
  });
});
