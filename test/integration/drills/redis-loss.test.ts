// `npm run drill -- --scenario redis-loss` as a CI test: FLUSHDB mid-rush, the sale rebuilt from
// Postgres; anything short of a pass (a 404 after the flush, a sale never rebuilt) fails here.
import { expect, it } from 'vitest';
import { redisLoss } from '../../../tools/drill/scenarios/redis-loss.ts';
import { answersIn, expectDrillPassed } from './drill-report.ts';

it(
  'redis-loss drill: after a FLUSHDB the sale answers 503 SALE_RECOVERING until rebuilt, then stock, limits, expiry and replays are right and only unpersisted 201s are lost',
  async () => {
    const report = await redisLoss.run({ log: () => undefined });
    await expectDrillPassed(report);
    expect(report.lossWindow).toBeDefined();
    expect(report.lost).toBeLessThanOrEqual(report.lossWindow ?? 0);
    // Refused only for as long as the rebuild took.
    expect(report.recoveryMs).toBeLessThan(30_000);
    expect(Object.keys(answersIn(report, 'redis lost')).filter((label) => label.startsWith('404'))).toEqual([]);
  },
  180_000,
);
