// `npm run drill -- --scenario postgres-outage` as a CI test: Postgres SIGKILLed for 30 s mid-rush.
import { expect, it } from 'vitest';
import { postgresOutage } from '../../../tools/drill/scenarios/postgres-outage.ts';
import { answersIn, expectDrillPassed } from './drill-report.ts';

it(
  'postgres-outage drill: 201s continue through a 30 s outage, readiness says 503 meanwhile, and the backlog lands exactly once',
  async () => {
    const report = await postgresOutage.run({ log: () => undefined });
    await expectDrillPassed(report);
    expect(answersIn(report, 'postgres down')['201']).toBeGreaterThan(0);
  },
  180_000,
);
