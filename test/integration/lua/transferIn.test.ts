// transferIn-2.lua against real Redis: the target's credit happens once per transfer id, clears
// soldOutAt, and says when it made a dry, listed shard sell again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transferIn } from '../../../src/stock/scripts/transfer-in.ts';
import { shardFixture } from '../../support/shard-fixture.ts';

const fx = shardFixture();
beforeAll(() => fx.open());
afterAll(() => fx.close());

describe('transferIn', () => {
  it('when a dry listed shard is credited, then available grows, soldOutAt goes, X is remembered and it reports reopened', async () => {
    const saleId = fx.newSaleId('in-ok');
    await fx.seed(saleId, 'p', [5, 0]);
    await fx.redis.hset(fx.keys(saleId, 'p', 1).item, 'soldOutAt', '123');
    const target = { saleId, sku: 'p', shard: 1 };
    expect((await transferIn(fx.scripts, target, { transferId: 'x1', quantity: 3 })).reply).toEqual({ code: 'OK', availableAfter: 3, reopened: true });
    expect(await fx.field(saleId, 'p', 1, 'soldOutAt')).toBeNull();
    expect(await fx.redis.hget(fx.keys(saleId, 'p', 1).transfersIn, 'x1')).toBe('3');
  });

  it('when the same X is credited again, then it answers ALREADY and available does not move', async () => {
    const saleId = fx.newSaleId('in-twice');
    await fx.seed(saleId, 'p', [0, 1]);
    const target = { saleId, sku: 'p', shard: 1 };
    expect((await transferIn(fx.scripts, target, { transferId: 'x1', quantity: 2 })).reply).toEqual({ code: 'OK', availableAfter: 3, reopened: false });
    expect((await transferIn(fx.scripts, target, { transferId: 'x1', quantity: 2 })).reply).toEqual({ code: 'ALREADY', quantity: 2 });
    expect(await fx.field(saleId, 'p', 1, 'available')).toBe('3');
  });

  it('when the item is delisted, then the credit lands but does not report a reopening', async () => {
    const saleId = fx.newSaleId('in-delisted');
    await fx.seed(saleId, 'p', [4, 0], { delisted: 'operator' });
    expect((await transferIn(fx.scripts, { saleId, sku: 'p', shard: 1 }, { transferId: 'x1', quantity: 2 })).reply).toEqual({
      code: 'OK',
      availableAfter: 2,
      reopened: false,
    });
  });

  it('when the target shard was never loaded, then it answers ITEM_NOT_FOUND and creates nothing', async () => {
    const saleId = fx.newSaleId('in-missing');
    expect((await transferIn(fx.scripts, { saleId, sku: 'p', shard: 1 }, { transferId: 'x1', quantity: 2 })).reply).toEqual({ code: 'ITEM_NOT_FOUND' });
    expect(await fx.redis.exists(fx.keys(saleId, 'p', 1).item, fx.keys(saleId, 'p', 1).transfersIn)).toBe(0);
  });
});
