// kill-worker: the worker (persister, expiry sweeper, refused-batch queue) is SIGKILLed mid-rush
// with batches in flight and stays down a few seconds. Shoppers do not notice (Redis decides and
// the outbox keeps the orders); once a worker is back, it claims the dead one's pending outbox
// entries and Postgres catches up, every order exactly once.
import { setTimeout as sleep } from 'node:timers/promises';
import { startRole } from '../../../test/integration/faults/harness.ts';
import { finish, ROLE_READY_MS, runDrill, startDrillStack, startRush, type DrillOptions, type Scenario } from '../drill.ts';
import { waitPersisted } from '../postgres.ts';

const DOWN_MS = 4_000;

export const killWorker: Scenario = {
  name: 'kill-worker',
  summary: `SIGKILL the worker mid-rush, ${DOWN_MS / 1000} s down, start it again; Postgres catches up exactly once`,
  run: (options: DrillOptions) =>
    runDrill('kill-worker', options, async (drill) => {
      drill.fault = `the worker process (persister, expiry sweeper) was SIGKILLed mid-rush and stayed down ${DOWN_MS / 1000} s`;
      drill.recoveryMeaning = 'from the SIGKILL to Postgres holding every order accepted until the new worker was ready';
      const s = await startDrillStack(drill);
      const rush = startRush(drill, s);
      await rush.waitForAccepted(300, 30_000);
      rush.phase = 'worker down';
      const killedAt = drill.event(`SIGKILL worker pid ${s.worker.pid} (${rush.ledger.accepted.size} orders accepted so far)`);
      await s.worker.kill('SIGKILL');
      await sleep(DOWN_MS);
      const acceptedWhileDown = rush.ledger.accepted.size;
      s.worker = await startRole(s.stack, 'worker', { readyTimeoutMs: ROLE_READY_MS });
      rush.phase = 'after';
      drill.event(`worker started again (pid ${s.worker.pid}); ${acceptedWhileDown} orders accepted by then`);
      const caughtUp = await waitPersisted(s.stack.databaseUrl, [...rush.ledger.accepted.keys()].slice(0, acceptedWhileDown), 30_000);
      drill.recoveryMs = caughtUp === undefined ? null : drill.now() - killedAt;
      if (caughtUp !== undefined) drill.figures['Postgres caught up after the worker was ready (ms)'] = caughtUp;
      if (caughtUp !== undefined) drill.event('Postgres holds every order accepted until the restart');
      const downAnswers = rush.answersByPhase()['worker down'] ?? {};
      drill.check('shoppers kept getting 201s while the worker was down', (downAnswers['201'] ?? 0) > 0, `answers while down: ${JSON.stringify(downAnswers)}`);
      await finish(drill, s);
    }),
};
