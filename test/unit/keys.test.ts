// The key builders: caller-chosen parts never make two different (user, key) pairs, users or
// items name the same Redis key, and the sale's hash tag stays the one Redis hashes on.
import { describe, expect, it } from 'vitest';
import { anchorKey, encodeKeyPart, fnv1a32, homeShard, orderKeyOf, shardKeys, shardTag, tagHex, userOrdersKey } from '../../src/stock/keys.ts';
import { mintOrderId, tagOfOrderId } from '../../src/stock/order-id.ts';

/** The part of a key Redis Cluster hashes: the first {…} with something inside, else the whole key. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

const AWKWARD = ['a', 'a:b', 'b:k', 'k', '用户:{x} y', '用户', '{x} y', '{x} y:k', '}', '{', '%', '%3A', ':', '', ' ', 'x%7By', '\uD800', '\uDBFF', '😀', '\uFFFD'];

describe('encodeKeyPart', () => {
  it('when ids are made of letters, digits and _.~-, then they stay as they are', () => {
    for (const id of ['phone-x', 'u-42', 'd11', 'a.b_c~d', '0192f3c4-5b6a-7c8d-9e0f-123456789abc']) expect(encodeKeyPart(id)).toBe(id);
  });

  it('when parts hold separators, braces, percent signs, spaces, non-ASCII or lone surrogates, then the result holds none of : { } and distinct parts stay distinct', () => {
    const encoded = AWKWARD.map(encodeKeyPart);
    for (const part of encoded) expect(part).not.toMatch(/[:{} ]|[^\x21-\x7e]/);
    expect(new Set(encoded).size).toBe(AWKWARD.length);
    expect(encodeKeyPart('用户:{x} y')).toBe('%E7%94%A8%E6%88%B7%3A%7Bx%7D%20y');
  });
});

describe('shardKeys', () => {
  const keys = shardKeys('fs', 'd11', 'phone-x', 0);
  const tag = `s${tagHex(keys.tag)}`;

  it('when every pair of awkward users and idempotency keys is keyed, then no two pairs share a key', () => {
    const seen = new Map<string, string>();
    for (const user of AWKWARD) {
      for (const key of AWKWARD) {
        const name = keys.idempotency(user, key);
        const pair = JSON.stringify([user, key]);
        expect(seen.get(name), `${pair} collides`).toBeUndefined();
        seen.set(name, pair);
      }
    }
    expect(keys.idempotency('a', 'b:k')).not.toBe(keys.idempotency('a:b', 'k'));
  });

  it('when sales, items, users and orders with awkward ids are keyed, then each key is distinct per id and never names another kind', () => {
    const all = [keys.sale, keys.item, keys.users, keys.outbox, keys.deadlines, keys.sweepLease, keys.transfersOut, keys.transfersSent, keys.transfersIn];
    for (const id of AWKWARD) {
      const other = shardKeys('fs', id, id, 0);
      all.push(other.item, other.users, other.sale, keys.order(id), keys.attempts(id, 0), keys.idempotency(id, 'k'), userOrdersKey('fs', id), anchorKey('fs', id));
    }
    expect(new Set(all).size).toBe(all.length);
  });

  it('when any caller part holds braces, then every key of the shard still hashes on the shard tag alone, and the anchor on the encoded sale id', () => {
    const names = AWKWARD.flatMap((part) => [keys.idempotency(part, part), keys.idempotency('u', part), keys.order(part), keys.attempts(part, 0)]);
    for (const name of [keys.sale, keys.outbox, keys.deadlines, ...names]) expect(hashTag(name), name).toBe(tag);
    for (const part of AWKWARD) {
      expect(hashTag(shardKeys('fs', part, part, 1).item)).toMatch(/^s[0-9a-f]{8}$/);
      if (part !== '') expect(hashTag(anchorKey('fs', part))).toBe(encodeKeyPart(part));
    }
  });

  it('when a shard is asked for again, then the same frozen names come back, and parts that would join alike never share them', () => {
    expect(shardKeys('fs', 'd11', 'phone-x', 0)).toBe(keys);
    expect(Object.isFrozen(keys)).toBe(true);
    expect(shardKeys('fs', 'a\u0000b', 'c', 0).item).not.toBe(shardKeys('fs', 'a', 'b\u0000c', 0).item);
    expect(shardKeys('fs', 'a', 'b', 1).item).not.toBe(shardKeys('fs', 'a', 'b', 0).item);
  });

  it('when every pair of awkward users and seconds is keyed, then no two share an attempt counter', () => {
    const names = AWKWARD.flatMap((user) => [keys.attempts(user, 1), keys.attempts(user, 2)]);
    expect(new Set(names).size).toBe(AWKWARD.length * 2);
  });
});

describe('layout 2: shard tags, home shards, order ids', () => {
  it('when hashing, then FNV-1a 32 of the UTF-8 bytes gives the pinned values (live data sits where they point: never change them)', () => {
    expect(fnv1a32('')).toBe(2166136261);
    expect(fnv1a32('u-42')).toBe(2163189153);
    expect(fnv1a32('用户')).toBe(467979193);
    expect(shardTag('d11', 'phone-x', 0)).toBe(3241724440);
    expect(shardTag('d11', 'phone-x', 3)).toBe(3292057297);
    expect(homeShard('u-42', 4)).toBe(1);
    expect(homeShard('anyone', 1)).toBe(0);
  });

  it('when a shard is keyed, then all its keys and its orders share its own hash tag, and another shard has another', () => {
    const shard = shardKeys('fs', 'd11', 'phone-x', 1);
    const id = mintOrderId(shard.tag);
    const names = [shard.sale, shard.item, shard.users, shard.outbox, shard.deadlines, shard.sweepLease, shard.transfersOut, shard.transfersSent, shard.transfersIn, shard.idempotency('u:1', 'k{'), shard.order(id), shard.attempts('u', 1)];
    expect(new Set(names.map(hashTag))).toEqual(new Set([`s${tagHex(shard.tag)}`]));
    expect(orderKeyOf('fs', id)).toBe(shard.order(id));
    expect(hashTag(shardKeys('fs', 'd11', 'phone-x', 2).item)).not.toBe(hashTag(shard.item));
    expect(hashTag(anchorKey('fs', 'd11'))).toBe('d11');
    expect(hashTag(userOrdersKey('fs', 'u:{1}'))).toBe('u:u%3A%7B1%7D');
  });

  it('when an order id is minted for a tag, then it is a UUIDv7 that carries the tag and sorts after earlier ids', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => mintOrderId(i % 2 ? 0xffffffff : 0));
    for (const [i, id] of ids.entries()) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(tagOfOrderId(id)).toBe(i % 2 ? 0xffffffff : 0);
    }
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(tagOfOrderId('not-an-id')).toBeUndefined();
  });
});
