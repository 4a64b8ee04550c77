// The per-process half of the attempt limit: counts per (sale, item, user) in one clock second,
// forgets everything when the second changes, and holds a bounded number of shoppers.
import { describe, expect, it } from 'vitest';
import { AttemptWindow } from '../../src/stock/attempt-window.ts';

const T = 1_700_000_000_000;

describe('AttemptWindow', () => {
  it('when a shopper makes limit + 2 attempts in one second, then the first limit are admitted and the rest are not', () => {
    const window = new AttemptWindow(3);
    const admitted = Array.from({ length: 5 }, (_, i) => window.admit('s', 'a', 'u', T + i * 100));
    expect(admitted).toEqual([true, true, true, false, false]);
  });

  it('when the next second starts, then every count starts again; other users and items were never shared', () => {
    const window = new AttemptWindow(1);
    expect(window.admit('s', 'a', 'u', T + 999)).toBe(true);
    expect(window.admit('s', 'a', 'u', T + 999)).toBe(false);
    expect(window.admit('s', 'b', 'u', T + 999)).toBe(true);
    expect(window.admit('s', 'a', 'v', T + 999)).toBe(true);
    expect(window.admit('s2', 'a', 'u', T + 999)).toBe(true);
    expect(window.admit('s', 'a', 'u', T + 1_000)).toBe(true);
    expect(window.tracked).toBe(1);
  });

  it('when more shoppers arrive in one second than it may track, then it holds no more and admits the untracked (Redis still limits them)', () => {
    const window = new AttemptWindow(1, 10);
    for (let i = 0; i < 50; i++) window.admit('s', 'a', `u-${i}`, T);
    expect(window.tracked).toBe(10);
    expect(window.admit('s', 'a', 'u-49', T)).toBe(true);
    expect(window.admit('s', 'a', 'u-0', T)).toBe(false);
  });

  it('when the limit is 0, then every attempt is admitted and nothing is held', () => {
    const window = new AttemptWindow(0);
    for (let i = 0; i < 20; i++) expect(window.admit('s', 'a', 'u', T)).toBe(true);
    expect(window.tracked).toBe(0);
  });
});
