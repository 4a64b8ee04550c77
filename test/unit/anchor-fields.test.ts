// The anchor names each item's K under `shards:<encoded sku>`; closing a sale reads the SKUs back
// from those fields, so decoding must invert encodeKeyPart exactly, whatever the SKU holds.
import { expect, it } from 'vitest';
import { skuOfAnchorField } from '../../src/stock/scripts/load-sale.ts';
import { encodeKeyPart } from '../../src/stock/keys.ts';

it.each(['phone-x', 'a:b', '{x} y', 'p%3Aq', '100%', '用户', 'emoji-😀', 'lone-\ud800-x', 'tail-\udfff'])('when the SKU is %j, then its anchor field decodes back to it', (sku) => {
  expect(skuOfAnchorField(`shards:${encodeKeyPart(sku)}`)).toBe(sku);
});

it('when a field is not an item K, then it names no SKU', () => {
  expect(skuOfAnchorField('startsAt')).toBeUndefined();
  expect(skuOfAnchorField('layout')).toBeUndefined();
});
