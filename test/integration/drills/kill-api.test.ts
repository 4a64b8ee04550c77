// `npm run drill -- --scenario kill-api` as a CI test: the API SIGKILLed mid-rush and restarted.
import { expect, it } from 'vitest';
import { killApi } from '../../../tools/drill/scenarios/kill-api.ts';
import { answersIn, countWhere, expectDrillPassed } from './drill-report.ts';

it(
  'kill-api drill: the API SIGKILLed mid-rush refuses connections until it is back, then every 201 is exactly one Postgres row',
  async () => {
    const report = await killApi.run({ log: () => undefined });
    await expectDrillPassed(report);
    // The fault really cut the service off: attempts found nothing listening while it was down.
    expect(countWhere(answersIn(report, 'api down'), (label) => label.startsWith('no answer'))).toBeGreaterThan(0);
    expect(answersIn(report, 'after')['201']).toBeGreaterThan(0);
  },
  150_000,
);
