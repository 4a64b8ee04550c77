// Shutdown steps have a deadline: one that hangs (a BullMQ worker waiting on a dead master) must
// not keep the service from stopping, and one that fails must not stop the steps after it.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { boundedStep } from '../../src/bounded-step.ts';

function recordingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

describe('boundedStep', () => {
  it('when a step never settles, then it resolves timed-out after the deadline and warns naming the step', async () => {
    const { logger, lines } = recordingLogger();
    const started = Date.now();
    expect(await boundedStep('persist workers', () => new Promise(() => {}), logger, 100)).toBe('timed-out');
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
    expect(lines).toEqual([expect.objectContaining({ step: 'persist workers', timeoutMs: 100, level: 40 })]);
  });

  it('when a step finishes or fails in time, then it resolves done at once (a failure is warned, not thrown)', async () => {
    const { logger, lines } = recordingLogger();
    expect(await boundedStep('quick', async () => {}, logger, 10_000)).toBe('done');
    expect(await boundedStep('broken', () => Promise.reject(new Error('boom')), logger, 10_000)).toBe('done');
    expect(lines).toEqual([expect.objectContaining({ step: 'broken', level: 40 })]);
  });
});
