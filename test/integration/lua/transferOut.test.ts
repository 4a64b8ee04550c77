// transferOut-3.lua against real Redis: the donor's debit of a transfer moves units from available
// into outPending and logs the transfer id once; a resend answers ALREADY with the logged quantity;
// a shard below the minimum is left untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transferOut } from '../../../src/stock/scripts/transfer-out.ts';
import { shardFixture } from '../../support/shard-fixture.ts';

const NOW = 1_700_000_000_000;
const fx = shardFixture();
beforeAll(() => fx.open());
afterAll(() => fx.close());

describe('transferOut', () => {
  it('when a donor has stock, then min(want, available) moves into outPending, X is logged as sent and listed by time', async () => {
    const saleId = fx.newSaleId('out-ok');
    await fx.seed(saleId, 'p', [7, 0]);
    const out = await transferOut(fx.scripts, { saleId, sku: 'p', shard: 0 }, { transferId: 'x1', to: 1, want: 10, min: 1, now: NOW });
    expect(out.reply).toEqual({ code: 'OK', quantity: 7, availableAfter: 0 });
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [0, 0], outPending: [7, 0], stock: 7 });
    const keys = fx.keys(saleId, 'p', 0);
    expect(await fx.redis.hget(keys.transfersOut, 'x1')).toBe(`1|7|${NOW}|sent`);
    expect(await fx.redis.zscore(keys.transfersSent, 'x1')).toBe(String(NOW));
  });

  it('when the same X is sent again (even asking for more), then it answers ALREADY with the first quantity and debits nothing', async () => {
    const saleId = fx.newSaleId('out-twice');
    await fx.seed(saleId, 'p', [10, 0]);
    const donor = { saleId, sku: 'p', shard: 0 };
    expect((await transferOut(fx.scripts, donor, { transferId: 'x1', to: 1, want: 4, min: 1, now: NOW })).reply).toMatchObject({ code: 'OK', quantity: 4 });
    expect((await transferOut(fx.scripts, donor, { transferId: 'x1', to: 1, want: 9, min: 1, now: NOW + 5 })).reply).toEqual({ code: 'ALREADY', quantity: 4 });
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [6, 0], outPending: [4, 0], stock: 10 });
  });

  it('when the donor holds fewer than min units, then it answers EMPTY with what it holds and writes nothing', async () => {
    const saleId = fx.newSaleId('out-empty');
    await fx.seed(saleId, 'p', [2, 0]);
    const out = await transferOut(fx.scripts, { saleId, sku: 'p', shard: 0 }, { transferId: 'x1', to: 1, want: 5, min: 3, now: NOW });
    expect(out.reply).toEqual({ code: 'EMPTY', available: 2 });
    expect(await fx.ledger(saleId, 'p', 2)).toEqual({ available: [2, 0], outPending: [0, 0], stock: 2 });
    expect(await fx.redis.exists(fx.keys(saleId, 'p', 0).transfersOut)).toBe(0);
  });

  it('when the donor shard was never loaded, then it answers ITEM_NOT_FOUND and creates nothing', async () => {
    const saleId = fx.newSaleId('out-missing');
    const out = await transferOut(fx.scripts, { saleId, sku: 'p', shard: 0 }, { transferId: 'x1', to: 1, want: 1, min: 1, now: NOW });
    expect(out.reply).toEqual({ code: 'ITEM_NOT_FOUND' });
    expect(await fx.redis.exists(fx.keys(saleId, 'p', 0).item, fx.keys(saleId, 'p', 0).transfersOut)).toBe(0);
  });

  it('when want or min is below 1, then the binding refuses before Redis', async () => {
    const donor = { saleId: 'any', sku: 'p', shard: 0 };
    await expect(transferOut(fx.scripts, donor, { transferId: 'x', to: 1, want: 0, min: 1, now: NOW })).rejects.toThrow(RangeError);
    await expect(transferOut(fx.scripts, donor, { transferId: 'x', to: 1, want: 1, min: 0, now: NOW })).rejects.toThrow(RangeError);
  });
});
