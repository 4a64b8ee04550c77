// postgres-outage: the private Postgres is SIGKILLed for 30 s mid-rush. Redis decides, so shoppers
// keep getting 201s; readiness reports the outage; once Postgres is back the outbox backlog lands,
// every order exactly once.
import { setTimeout as sleep } from 'node:timers/promises';
import { answers, waitForStatus } from '../../../test/integration/faults/harness.ts';
import { finish, runDrill, startDrillStack, startRush, type DrillOptions, type Scenario } from '../drill.ts';
import { waitPersisted } from '../postgres.ts';

export const OUTAGE_MS = 30_000;

export const postgresOutage: Scenario = {
  name: 'postgres-outage',
  summary: `SIGKILL Postgres for ${OUTAGE_MS / 1000} s mid-rush; orders still 201, backlog lands exactly once`,
  run: (options: DrillOptions) =>
    runDrill('postgres-outage', options, async (drill) => {
      drill.fault = `Postgres was SIGKILLed mid-rush and stayed down ${OUTAGE_MS / 1000} s`;
      drill.recoveryMeaning = 'from Postgres answering again to it holding every order accepted during the outage';
      const s = await startDrillStack(drill);
      // Slow lanes: the point is a steady flow through a long outage, not load.
      const rush = startRush(drill, s, { concurrency: 4, pauseMs: 20 });
      await rush.waitForAccepted(200, 30_000);
      rush.phase = 'postgres down';
      const killedAt = drill.event(`SIGKILL postgres pid ${s.stack.postgres.pid}`);
      await s.stack.postgres.kill('SIGKILL');
      const ready: Record<string, number> = {};
      while (drill.now() - killedAt < OUTAGE_MS) {
        const status = String((await answers(`${s.api.baseUrl}/health/ready`)) ?? 'no answer');
        ready[status] = (ready[status] ?? 0) + 1;
        await sleep(1_000);
      }
      await s.stack.postgres.restart();
      rush.phase = 'after';
      const restartedAt = drill.event('postgres started again');
      const acceptedByThen = [...rush.ledger.accepted.keys()];
      const readyAfterMs = await waitForStatus(`${s.api.baseUrl}/health/ready`, 200, 20_000).catch(() => undefined);
      const drainedMs = await waitPersisted(s.stack.databaseUrl, acceptedByThen, 45_000);
      drill.recoveryMs = drainedMs === undefined ? null : drill.now() - restartedAt;
      drill.event(drainedMs === undefined ? 'the backlog did not land in 45 s' : `backlog of ${acceptedByThen.length} orders persisted`);
      const downAnswers = rush.answersByPhase()['postgres down'] ?? {};
      drill.check('shoppers kept getting 201s during the outage', (downAnswers['201'] ?? 0) > 0, `answers during the outage: ${JSON.stringify(downAnswers)}`);
      drill.check('/health/ready said 503 throughout the outage', Object.keys(ready).join() === '503', `probes: ${JSON.stringify(ready)}`);
      drill.check('/health/ready 200 again after the restart', readyAfterMs !== undefined, `${readyAfterMs ?? 'never'} ms after the restart`);
      await sleep(1_000);
      await finish(drill, s, 45_000);
    }),
};
