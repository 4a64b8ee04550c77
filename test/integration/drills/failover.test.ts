// `npm run drill -- --scenario failover` as a CI test: REDIS_DURABILITY=replica on a 3+3 Redis
// Cluster, the master holding the sale SIGKILLed mid-rush.
import { expect, it } from 'vitest';
import { failover } from '../../../tools/drill/scenarios/failover.ts';
import { answersIn, countWhere, expectDrillPassed } from './drill-report.ts';

it(
  'failover drill: while a replica is promoted the service answers 503 (never 500), keyed retries then succeed, and no 201 is lost',
  async () => {
    const report = await failover.run({ log: () => undefined });
    await expectDrillPassed(report);
    expect(countWhere(answersIn(report, 'failover'), (label) => label.startsWith('503'))).toBeGreaterThan(0);
    expect(report.figures['failover: kill to promoted replica serving (ms)']).toBeGreaterThan(0);
  },
  180_000,
);
