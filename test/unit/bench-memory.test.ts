// The expiry storm's memory figures group keys by family (bench/redis-memory.ts): ids must
// collapse, or every order would be a family of its own and the per-order breakdown meaningless.
import { expect, it } from 'vitest';
import { keyFamily, perOrder, type MemoryFootprint } from '../../bench/redis-memory.ts';
import { shardKeys, userOrdersKey } from '../../src/stock/keys.ts';
import { mintOrderId } from '../../src/stock/order-id.ts';

const prefix = 'benchexpab12cd';

it('when layout-2 keys of two orders, shoppers and BullMQ jobs are grouped, then each kind is one family', () => {
  const keys = shardKeys(prefix, 'expiry-ab12cd', 'hot', 0);
  const families = (make: (i: number) => string) => new Set([1, 2].map((i) => keyFamily(make(i), prefix)));
  expect(families(() => keys.order(mintOrderId(keys.tag)))).toEqual(new Set(['{shard}:order:<id>']));
  expect(families((i) => userOrdersKey(prefix, `shopper-${i}`))).toEqual(new Set(['{user}:orders']));
  expect(families((i) => `{${prefix}:bull}:persist-orders:expiry-ab12cd|1764500000000-${i}|1764500000001-0|${i * 7}`)).toEqual(
    new Set(['{bull}:persist-orders:<job>']),
  );
  expect(keyFamily(keys.outbox, prefix)).toBe('{shard}:expiry-ab12cd:hot:<n>:outbox');
  expect(keyFamily(keys.item, prefix)).toBe('{shard}:expiry-ab12cd:hot:<n>:item');
});

it('when a footprint is set against its baseline, then bytes per order count only what grew, largest family first', () => {
  const at = (byFamily: MemoryFootprint['byFamily']): MemoryFootprint => ({
    byFamily,
    bytes: Object.values(byFamily).reduce((sum, entry) => sum + entry.bytes, 0),
    keys: Object.values(byFamily).reduce((sum, entry) => sum + entry.keys, 0),
    usedMemory: 0,
  });
  const baseline = at({ '{sale}:item:hot': { keys: 1, bytes: 200 }, '{bull}:meta': { keys: 1, bytes: 100 } });
  const measured = at({
    '{sale}:item:hot': { keys: 1, bytes: 200 },
    '{bull}:meta': { keys: 1, bytes: 100 },
    '{sale}:order:<id>': { keys: 10, bytes: 3_000 },
    '{sale}:outbox': { keys: 1, bytes: 4_000 },
  });
  const result = perOrder(baseline, measured, 10);
  expect(result.bytes).toBe(700);
  expect(Object.entries(result.byFamily)).toEqual([
    ['outbox', 400],
    ['order:<id>', 300],
  ]);
});
