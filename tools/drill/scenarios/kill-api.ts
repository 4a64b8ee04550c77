// kill-api: the API process is SIGKILLed mid-rush, with requests in flight, and started again on
// its port (as a supervisor would). Requests cut mid-flight are retried with their key: an order
// the dead process had made replays, no order is made twice, none is lost.
import { startRole } from '../../../test/integration/faults/harness.ts';
import { finish, ROLE_READY_MS, runDrill, startDrillStack, startRush, type DrillOptions, type Scenario } from '../drill.ts';

export const killApi: Scenario = {
  name: 'kill-api',
  summary: 'SIGKILL the API process mid-rush, start it again; cut requests retried with their key',
  run: (options: DrillOptions) =>
    runDrill('kill-api', options, async (drill) => {
      drill.fault = 'the API process was SIGKILLed mid-rush (requests in flight cut), then started again on the same port';
      drill.recoveryMeaning = 'from the SIGKILL to the first new 201 answered by the restarted API';
      const s = await startDrillStack(drill);
      const rush = startRush(drill, s, { concurrency: 16 });
      await rush.waitForAccepted(300, 30_000);
      rush.phase = 'api down';
      const killedAt = drill.event(`SIGKILL api pid ${s.api.pid} (${rush.ledger.accepted.size} orders accepted so far)`);
      await s.api.kill('SIGKILL');
      s.api = await startRole(s.stack, 'api', { port: s.api.port, readyTimeoutMs: ROLE_READY_MS });
      rush.phase = 'after';
      drill.event(`api started again (pid ${s.api.pid}) and ready`);
      const firstAfter = await rush.waitForAcceptedIn('after', 20_000);
      drill.recoveryMs = firstAfter === undefined ? null : firstAfter - killedAt;
      drill.figures['API process down, kill to ready (ms)'] = drill.now() - killedAt;
      await rush.waitForAccepted(rush.ledger.accepted.size + 200, 20_000);
      await finish(drill, s);
      const cut = Object.entries(rush.answersByPhase()['api down'] ?? {})
        .filter(([label]) => label.startsWith('no answer (cut'))
        .reduce((sum, [, n]) => sum + n, 0);
      drill.figures['requests cut mid-flight by the kill'] = cut;
    }),
};
