// The cluster primary's pure parts: which processes it runs for a role, and how often it restarts one.
import { describe, expect, it } from 'vitest';
import { clusterSlots } from '../../src/cluster/primary.ts';
import { RestartBudget } from '../../src/cluster/restart-budget.ts';

describe('clusterSlots', () => {
  it('when the role is api, then it runs only API processes, named by their place', () => {
    expect(clusterSlots('api', 3)).toEqual([
      { name: 'api-1', role: 'api' },
      { name: 'api-2', role: 'api' },
      { name: 'api-3', role: 'api' },
    ]);
  });

  it('when the role is all, then exactly one worker process joins the API processes', () => {
    const slots = clusterSlots('all', 2);
    expect(slots.map((slot) => slot.name)).toEqual(['api-1', 'api-2', 'worker']);
    expect(slots.filter((slot) => slot.role === 'worker')).toHaveLength(1);
  });
});

describe('RestartBudget', () => {
  it('when restarts come faster than the limit, then the one over it is refused', () => {
    const budget = new RestartBudget(3, 60_000);
    expect([0, 1_000, 2_000, 3_000].map((at) => budget.take(at))).toEqual([true, true, true, false]);
  });

  it('when the window has passed since the oldest restart, then one more is allowed', () => {
    const budget = new RestartBudget(2, 60_000);
    expect(budget.take(0)).toBe(true);
    expect(budget.take(30_000)).toBe(true);
    expect(budget.take(59_999)).toBe(false);
    expect(budget.take(60_000)).toBe(true);
    expect(budget.take(60_001)).toBe(false);
  });
});
