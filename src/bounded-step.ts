// Shutdown must end even when a part of it cannot: a BullMQ worker whose blocking connection sat
// on a Redis master that died may wait for that master forever (seen after cluster failovers).
// Each step gets a deadline; one that outlives it is left behind with a warning.
import type { Logger } from './logger.ts';

/** How long one shutdown step may take before the rest goes on without it. */
export const STOP_STEP_TIMEOUT_MS = 5_000;

/** Runs `step`; resolves when it settles or after `timeoutMs`, whichever comes first. */
export async function boundedStep(name: string, step: () => Promise<unknown>, logger: Logger, timeoutMs = STOP_STEP_TIMEOUT_MS): Promise<'done' | 'timed-out'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timed-out'>((resolve) => {
    timer = setTimeout(() => resolve('timed-out'), timeoutMs);
  });
  const finished = step().then(
    () => 'done' as const,
    (err: unknown) => {
      logger.warn({ err, step: name }, 'shutdown step failed; going on');
      return 'done' as const;
    },
  );
  const outcome = await Promise.race([finished, deadline]);
  clearTimeout(timer);
  if (outcome === 'timed-out') logger.warn({ step: name, timeoutMs }, 'shutdown step did not finish in time; going on without it');
  return outcome;
}
