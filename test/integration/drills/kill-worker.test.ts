// `npm run drill -- --scenario kill-worker` as a CI test: the worker SIGKILLed mid-rush, down a few seconds.
import { expect, it } from 'vitest';
import { killWorker } from '../../../tools/drill/scenarios/kill-worker.ts';
import { answersIn, expectDrillPassed } from './drill-report.ts';

it(
  'kill-worker drill: shoppers keep getting 201s while the worker is down, and once it is back Postgres holds every 201 exactly once',
  async () => {
    const report = await killWorker.run({ log: () => undefined });
    await expectDrillPassed(report);
    expect(answersIn(report, 'worker down')['201']).toBeGreaterThan(0);
  },
  150_000,
);
