// `npm run drill -- --scenario redis-restart` as a CI test: Redis with AOF (appendfsync always)
// SIGKILLed mid-rush and restarted from its AOF; no acknowledged order may be lost.
import { expect, it } from 'vitest';
import { redisRestart } from '../../../tools/drill/scenarios/redis-restart.ts';
import { answersIn, expectDrillPassed } from './drill-report.ts';

it(
  'redis-restart drill (appendfsync always): after a SIGKILL and a restart from the AOF every 201 is still one Postgres row and Redis stock agrees',
  async () => {
    const report = await redisRestart.run({ log: () => undefined });
    await expectDrillPassed(report);
    expect(report.fault).toContain('appendfsync always');
    expect(answersIn(report, 'after')['201']).toBeGreaterThan(0);
    // The cost of `always` was measured on both paths.
    expect(report.figures['Redis alone, 32 clients: writes/s always']).toBeGreaterThan(0);
    expect(report.figures['service 201/s always (32 lanes)']).toBeGreaterThan(0);
  },
  180_000,
);
