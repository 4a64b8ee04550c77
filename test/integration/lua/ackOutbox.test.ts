// ackOutbox-1.lua against real Redis: the persister's acknowledgement takes a batch out of the
// consumer group's pending list and out of the stream together, touches nothing else, is
// harmless when repeated after a crash, and never deletes an entry the group has not delivered.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardKeys } from '../../../src/stock/keys.ts';
import { ackOutbox } from '../../../src/stock/scripts/ack-outbox.ts';
import { luaFixture } from '../../support/lua-fixtures.ts';

const GROUP = 'persist';

const lua = luaFixture({ now: Date.now(), salePrefix: 'ack' });

/** A fresh stock shard's outbox stream. */
function newStream(label: string): string {
  return shardKeys(lua.scripts.prefix, lua.newSaleId(label), 'sku', 0).outbox;
}

/** A stream of n entries with the persisters' group; returns the entry ids in order. */
async function outbox(stream: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await lua.redis.xadd(stream, '*', 'id', `order-${i}`, 'quantity', '1')) ?? '');
  await lua.redis.xgroup('CREATE', stream, GROUP, '0');
  return ids;
}

/** Delivers up to `count` new entries to `consumer`; returns their ids. */
async function deliver(stream: string, consumer: string, count: number): Promise<string[]> {
  const reply = (await lua.redis.xreadgroup('GROUP', GROUP, consumer, 'COUNT', count, 'STREAMS', stream, '>')) as [string, [string, string[]][]][] | null;
  return (reply?.[0]?.[1] ?? []).map(([id]) => id);
}

const pendingCount = async (stream: string) => ((await lua.redis.xpending(stream, GROUP)) as [number, ...unknown[]])[0];
const streamIds = async (stream: string) => (await lua.redis.xrange(stream, '-', '+')).map(([id]) => id);
const ack = (stream: string, ...entryIds: string[]) => ackOutbox(lua.scripts, { outbox: stream }, { group: GROUP, entryIds });

beforeAll(() => lua.open());
afterAll(() => lua.close());

describe('ackOutbox', () => {
  it('when a delivered batch is acknowledged, then its entries leave the pending list and the stream, and the rest stay', async () => {
    const stream = newStream('ok');
    const ids = await outbox(stream, 5);
    const batch = await deliver(stream, 'persister-a', 3);
    expect(batch).toEqual(ids.slice(0, 3));
    expect(await pendingCount(stream)).toBe(3);

    expect(await ack(stream, ...batch)).toBe(3);

    expect(await pendingCount(stream)).toBe(0);
    expect(await lua.redis.xlen(stream)).toBe(2);
    expect(await streamIds(stream)).toEqual(ids.slice(3));
    // The rest is still delivered as new.
    expect(await deliver(stream, 'persister-a', 10)).toEqual(ids.slice(3));
  });

  it('when the same batch is acknowledged again (a persister rerun after a crash), then 0 is returned and nothing changes', async () => {
    const stream = newStream('again');
    const ids = await outbox(stream, 4);
    const batch = await deliver(stream, 'persister-a', 2);
    expect(await ack(stream, ...batch)).toBe(2);
    const other = await deliver(stream, 'persister-a', 1);

    expect(await ack(stream, ...batch)).toBe(0);

    expect(await streamIds(stream)).toEqual(ids.slice(2));
    expect(await pendingCount(stream)).toBe(other.length);
  });

  it('when two consumers each hold a batch and one acknowledges, then only that consumer\'s entries leave the pending list and the stream', async () => {
    const stream = newStream('two-consumers');
    const ids = await outbox(stream, 6);
    const a = await deliver(stream, 'persister-a', 2);
    const b = await deliver(stream, 'persister-b', 3);

    expect(await ack(stream, ...b)).toBe(3);

    expect(await lua.redis.xlen(stream)).toBe(3);
    expect(await streamIds(stream)).toEqual([...a, ...ids.slice(5)]);
    const pending = (await lua.redis.xpending(stream, GROUP, '-', '+', 10)) as [string, string, number, number][];
    expect(pending.map(([id, consumer]) => [id, consumer])).toEqual(a.map((id) => [id, 'persister-a']));
  });

  it('when batches are acknowledged out of order, then each leaves the stream and the stream ends empty', async () => {
    const stream = newStream('out-of-order');
    const ids = await outbox(stream, 250);
    const older = await deliver(stream, 'persister-a', 120);
    const newer = await deliver(stream, 'persister-b', 130);

    expect(await ack(stream, ...newer)).toBe(130);
    expect(await streamIds(stream)).toEqual(older);
    expect(await ack(stream, ...older)).toBe(120);

    expect(await lua.redis.xlen(stream)).toBe(0);
    expect(await pendingCount(stream)).toBe(0);
    expect(ids).toEqual([...older, ...newer]);
  });

  it('when an older entry stays pending, then a later batch still leaves the stream and the pending entry stays', async () => {
    const stream = newStream('stuck');
    const ids = await outbox(stream, 5);
    const stuck = await deliver(stream, 'persister-a', 1);
    const batch = await deliver(stream, 'persister-a', 3);

    expect(await ack(stream, ...batch)).toBe(3);

    expect(await streamIds(stream)).toEqual([...stuck, ids[4]]);
    expect(await pendingCount(stream)).toBe(1);
  });

  it('when ids that were never in the stream come with a delivered batch, then only the batch is deleted and the count says so', async () => {
    const stream = newStream('unknown-ids');
    const ids = await outbox(stream, 3);
    const batch = await deliver(stream, 'persister-a', 2);

    expect(await ack(stream, '1-1', ...batch, '9999999999999-0')).toBe(2);

    expect(await lua.redis.xlen(stream)).toBe(1);
    expect(await streamIds(stream)).toEqual(ids.slice(2));
    expect(await pendingCount(stream)).toBe(0);
  });

  it('when only unknown ids are given for a stream that does not exist, then 0 is returned and no key is created', async () => {
    const stream = newStream('missing');

    expect(await ack(stream, '1-1', '2-0')).toBe(0);

    expect(await lua.redis.exists(stream)).toBe(0);
  });

  it('when no ids are given, then 0 is returned and no key is created', async () => {
    const stream = newStream('empty');

    expect(await ack(stream)).toBe(0);

    expect(await lua.redis.exists(stream)).toBe(0);
  });

  it('when no ids are given for a stream with pending entries, then nothing is acknowledged or deleted', async () => {
    const stream = newStream('empty-list');
    const ids = await outbox(stream, 2);
    await deliver(stream, 'persister-a', 2);

    expect(await ack(stream)).toBe(0);

    expect(await streamIds(stream)).toEqual(ids);
    expect(await pendingCount(stream)).toBe(2);
  });

  it('when a batch claimed by another persister is acknowledged by the one that read it first, then each entry is removed once', async () => {
    const stream = newStream('claimed');
    await outbox(stream, 3);
    const batch = await deliver(stream, 'persister-a', 3);
    // persister-b takes the entries over (persister-a looked dead) and acknowledges first.
    expect(await lua.redis.xclaim(stream, GROUP, 'persister-b', 0, ...batch)).toHaveLength(3);

    expect(await ack(stream, ...batch)).toBe(3);
    expect(await ack(stream, ...batch)).toBe(0);

    expect(await streamIds(stream)).toEqual([]);
    expect(await pendingCount(stream)).toBe(0);
  });

  it('when an id the group never delivered is passed, then that entry stays in the stream', async () => {
    const stream = newStream('undelivered');
    const ids = await outbox(stream, 3);
    const batch = await deliver(stream, 'persister-a', 1);
    const undelivered = ids.slice(1, 2);

    await ack(stream, ...batch, ...undelivered);

    // Deleting it would lose an order nobody persisted.
    expect(await streamIds(stream)).toEqual(ids.slice(1));
    expect(await deliver(stream, 'persister-a', 10)).toEqual(ids.slice(1));
  });

  it('when the group name is wrong, then no entry is deleted', async () => {
    const stream = newStream('wrong-group');
    const ids = await outbox(stream, 2);
    const batch = await deliver(stream, 'persister-a', 2);

    await ackOutbox(lua.scripts, { outbox: stream }, { group: 'no-such-group', entryIds: batch });

    expect(await streamIds(stream)).toEqual(ids);
    expect(await pendingCount(stream)).toBe(2);
  });
});
