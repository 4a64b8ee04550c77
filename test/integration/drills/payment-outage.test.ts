// `npm run drill -- --scenario payment-outage` as a CI test: payments down longer than the payment
// window with the operator's outage switch on; anything short of a pass fails here.
import { expect, it } from 'vitest';
import { paymentOutage } from '../../../tools/drill/scenarios/payment-outage.ts';
import { expectDrillPassed } from './drill-report.ts';

it(
  'payment-outage drill: nothing expires during the outage, payments in the stretched window succeed, unpaid orders expire at their stretched deadline',
  async () => {
    const report = await paymentOutage.run({ log: () => undefined });
    await expectDrillPassed(report);
    expect(report.checks.find((check) => check.name === 'nothing expired during the outage')?.ok).toBe(true);
  },
  180_000,
);
