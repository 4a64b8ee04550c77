// transferDone-3.lua against real Redis, and the whole transfer protocol it closes: Done takes the
// units out of the donor's outPending once; every step sent twice, and a driver stopped after any
// step and then recovered, leave Σ available + Σ outPending unchanged and outPending at 0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StockTransfers } from '../../../src/stock/transfers.ts';
import { transferDone } from '../../../src/stock/scripts/transfer-done.ts';
import { transferIn } from '../../../src/stock/scripts/transfer-in.ts';
import { transferOut } from '../../../src/stock/scripts/transfer-out.ts';
import { shardFixture } from '../../support/shard-fixture.ts';

const NOW = 1_700_000_000_000;
const fx = shardFixture();
beforeAll(() => fx.open());
afterAll(() => fx.close());

/** A recoverer whose clock is `at`. */
const recovererAt = (at: number) => new StockTransfers(fx.scripts, { now: () => at });

describe('transferDone', () => {
  it('when a credited transfer is closed, then outPending drops by its quantity, it is logged done and leaves the sent set', async () => {
    const saleId = fx.newSaleId('done-ok');
    await fx.seed(saleId, 'p', [6, 0]);
    const donor = { saleId, sku: 'p', shard: 0 };
    await transferOut(fx.scripts, donor, { transferId: 'x1', to: 1, want: 4, min: 1, now: NOW });
    await transferIn(fx.scripts, { saleId, sku: 'p', shard: 1 }, { transferId: 'x1', quantity: 4 });
    expect(await transferDone(fx.scripts, donor, 'x1')).toEqual({ code: 'OK', quantity: 4 });
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [2, 4], outPending: [0, 0], stock: 6 });
    const keys = fx.keys(saleId, 'p', 0);
    expect(await fx.redis.hget(keys.transfersOut, 'x1')).toBe(`1|4|${NOW}|done`);
    expect(await fx.redis.zcard(keys.transfersSent)).toBe(0);
  });

  it('when Done is sent twice, then the second answers ALREADY and outPending is not taken twice', async () => {
    const saleId = fx.newSaleId('done-twice');
    await fx.seed(saleId, 'p', [6, 0]);
    const donor = { saleId, sku: 'p', shard: 0 };
    await transferOut(fx.scripts, donor, { transferId: 'x1', to: 1, want: 3, min: 1, now: NOW });
    await transferIn(fx.scripts, { saleId, sku: 'p', shard: 1 }, { transferId: 'x1', quantity: 3 });
    await transferDone(fx.scripts, donor, 'x1');
    expect(await transferDone(fx.scripts, donor, 'x1')).toEqual({ code: 'ALREADY', quantity: 3 });
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [3, 3], outPending: [0, 0], stock: 6 });
  });

  it('when Done names a transfer never debited on that shard, then it answers UNKNOWN and writes nothing', async () => {
    const saleId = fx.newSaleId('done-unknown');
    await fx.seed(saleId, 'p', [6, 0]);
    expect(await transferDone(fx.scripts, { saleId, sku: 'p', shard: 0 }, 'nope')).toEqual({ code: 'UNKNOWN' });
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [6, 0], outPending: [0, 0], stock: 6 });
  });
});

describe('the transfer protocol', () => {
  it('when every step is sent twice, then the units move once and the stock is conserved', async () => {
    const saleId = fx.newSaleId('twice');
    await fx.seed(saleId, 'p', [9, 1, 0]);
    const donor = { saleId, sku: 'p', shard: 0 };
    const target = { saleId, sku: 'p', shard: 2 };
    for (let i = 0; i < 2; i++) await transferOut(fx.scripts, donor, { transferId: 'x', to: 2, want: 5, min: 1, now: NOW });
    for (let i = 0; i < 2; i++) await transferIn(fx.scripts, target, { transferId: 'x', quantity: 5 });
    for (let i = 0; i < 2; i++) await transferDone(fx.scripts, donor, 'x');
    expect(await fx.ledger(saleId, 'p', 3)).toEqual({ available: [4, 1, 5], outPending: [0, 0, 0], stock: 10 });
  });

  it.each([
    ['before Out', 0],
    ['after Out', 1],
    ['after In', 2],
    ['after Done', 3],
  ])('when the driver stops %s and recovery runs (twice, as two sweepers would), then Σ stock is conserved, outPending is 0 and the units land at most once', async (_label, steps) => {
    const saleId = fx.newSaleId(`crash-${steps}`);
    await fx.seed(saleId, 'p', [8, 0]);
    const donor = { saleId, sku: 'p', shard: 0 };
    if (steps >= 1) await transferOut(fx.scripts, donor, { transferId: 'x', to: 1, want: 4, min: 1, now: NOW });
    if (steps >= 2) await transferIn(fx.scripts, { saleId, sku: 'p', shard: 1 }, { transferId: 'x', quantity: 4 });
    if (steps >= 3) await transferDone(fx.scripts, donor, 'x');
    // Between In and Done the units count twice (credited, still in outPending): an overcount
    // that only delays a SOLD_OUT, and that Done (here, recovery's) removes.
    expect((await fx.ledger(saleId, 'p', 2)).stock).toBe(steps === 2 ? 12 : 8);

    // Not stale yet: a live driver may still be finishing it, so recovery leaves it alone.
    expect(await recovererAt(NOW + 1_000).recover(saleId, 'p', 2)).toBe(0);
    const recovered = await Promise.all([recovererAt(NOW + 3_000).recover(saleId, 'p', 2), recovererAt(NOW + 3_000).recover(saleId, 'p', 2)]);
    // Out alone or Out+In: one of the two recoverers closed the 4 units, never both.
    expect(recovered.reduce((a, b) => a + b, 0)).toBe(steps === 1 || steps === 2 ? 4 : 0);
    const moved = steps === 0 ? 0 : 4;
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [8 - moved, moved], outPending: [0, 0], stock: 8 });
    expect(await fx.redis.zcard(fx.keys(saleId, 'p', 0).transfersSent)).toBe(0);
  });
});
