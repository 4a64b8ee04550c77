// The load kit's invariant checker judges fabricated runs: an honest one passes, an oversold
// one, a per-user-limit breach, a lost order and a phantom row each fail.
import { describe, expect, it } from 'vitest';
import { checkInvariants, passed, type Evidence, type PersistedOrder } from '../../load-tests/invariants.ts';
import type { AcceptedOrder } from '../../load-tests/recorder.ts';

const order = (orderId: string, userId: string, quantity = 1, extra: Partial<AcceptedOrder> = {}): AcceptedOrder => ({
  orderId,
  userId,
  sku: 'phone',
  quantity,
  key: undefined,
  replayed: false,
  ...extra,
});
const row = (o: AcceptedOrder): PersistedOrder => ({ id: o.orderId, sku: o.sku, userId: o.userId, quantity: o.quantity, status: 'pending_payment' });

function evidence(orders: AcceptedOrder[], overrides: Partial<Evidence> = {}): Evidence {
  const live = orders.filter((o, i) => orders.findIndex((p) => p.orderId === o.orderId) === i).reduce((sum, o) => sum + o.quantity, 0);
  return {
    items: [{ sku: 'phone', initialStock: 3, restocked: 0, perUserLimit: 2, lowStockLevel: undefined }],
    orders,
    unanswered: [],
    byStatus: { '201': orders.length, '409': 10 },
    report: [{ sku: 'phone', available: 3 - live, reserved: live }],
    rows: orders.filter((o) => !o.replayed).map(row),
    maxQuantity: 2,
    ...overrides,
  };
}

const verdictOf = (results: ReturnType<typeof checkInvariants>, name: string) => results.find((r) => r.name.startsWith(name))?.verdict;

describe('load-test invariant checker', () => {
  it('when a run sold exactly its stock within the limits, then every invariant passes', () => {
    const results = checkInvariants(evidence([order('a', 'u1', 2), order('b', 'u2'), order('b', 'u2', 1, { replayed: true })]));
    expect(results.filter((r) => r.verdict === 'FAIL')).toEqual([]);
    expect(passed(results)).toBe(true);
  });

  it('when more units were accepted than the stock, then "no oversell" fails', () => {
    const oversold = [order('a', 'u1', 2), order('b', 'u2', 2)];
    const results = checkInvariants(evidence(oversold, { report: [{ sku: 'phone', available: 0, reserved: 3 }] }));
    expect(verdictOf(results, 'no oversell (201 answers)')).toBe('FAIL');
    expect(verdictOf(results, 'no oversell (Postgres)')).toBe('FAIL');
    expect(verdictOf(results, 'available =')).toBe('FAIL');
    expect(passed(results)).toBe(false);
  });

  it('when one user holds more than the per-user limit, then "per-user limit" fails', () => {
    const results = checkInvariants(evidence([order('a', 'u1', 2), order('b', 'u1')]));
    expect(verdictOf(results, 'per-user limit')).toBe('FAIL');
  });

  it('when a 201 never reached Postgres, then "every 201 persisted exactly once" fails', () => {
    const results = checkInvariants(evidence([order('a', 'u1'), order('b', 'u2')], { rows: [row(order('a', 'u1'))] }));
    expect(verdictOf(results, 'every 201 persisted')).toBe('FAIL');
  });

  it('when a 201 has two rows, or its row names another user, then "every 201 persisted exactly once" fails', () => {
    const answered = [order('a', 'u1'), order('b', 'u2')];
    const twice = checkInvariants(evidence(answered, { rows: [row(answered[0]!), row(answered[0]!), row(answered[1]!)] }));
    expect(twice.find((r) => r.name.startsWith('every 201 persisted'))?.detail).toMatch(/a: 2 rows/);
    const otherUser = checkInvariants(evidence(answered, { rows: [row(answered[0]!), { ...row(answered[1]!), userId: 'u9' }] }));
    expect(otherUser.find((r) => r.name.startsWith('every 201 persisted'))?.detail).toMatch(/b: row says u9/);
  });

  it('when Postgres holds a row no answer or unanswered request explains, then "no phantom rows" fails', () => {
    const answered = [order('a', 'u1')];
    const phantom = row(order('z', 'u9'));
    expect(verdictOf(checkInvariants(evidence(answered, { rows: [row(answered[0]!), phantom] })), 'no phantom rows')).toBe('FAIL');
    const cutOff = { userId: 'u9', sku: 'phone', quantity: 1 };
    expect(verdictOf(checkInvariants(evidence(answered, { rows: [row(answered[0]!), phantom], unanswered: [cutOff] })), 'no phantom rows')).toBe('PASS');
  });

  it('when one Idempotency-Key answered two different orders, then "replays" fails', () => {
    const results = checkInvariants(evidence([order('a', 'u1', 1, { key: 'k1' }), order('b', 'u1', 1, { key: 'k1' })]));
    expect(verdictOf(results, 'replays return the same order')).toBe('FAIL');
  });

  it('when any answer was a 5xx, then "no 5xx" fails', () => {
    const results = checkInvariants(evidence([order('a', 'u1')], { byStatus: { '201': 1, '500': 2 } }));
    expect(verdictOf(results, 'no 5xx')).toBe('FAIL');
  });
});
