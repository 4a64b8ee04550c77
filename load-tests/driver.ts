// Drives one phase with autocannon's programmatic API: each request is built by setupRequest from
// the scenario's traffic, each answer goes to the recorder through onResponse, and a tick shows progress.
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { Recorder, type Recording, type Sent } from './recorder.ts';
import type { Traffic } from './scenarios.ts';

export type Progress = 'bar' | 'lines' | 'off';

export interface PhaseSpec {
  /** e.g. "rush / reserve" */
  readonly label: string;
  /** Origin, e.g. http://127.0.0.1:3000 */
  readonly origin: string;
  readonly path: string;
  readonly connections: number;
  readonly durationSeconds: number;
  /** Requests per second over all connections; undefined = closed loop. */
  readonly rate: number | undefined;
  readonly traffic: Traffic;
  readonly progress: Progress;
}

export interface PhaseResult extends Recording {
  readonly label: string;
  readonly durationSeconds: number;
  readonly requestsPerSecond: number;
  /** Connection errors and timeouts, as autocannon counted them. */
  readonly errors: number;
  readonly timeouts: number;
  /** autocannon's own latency histogram (ms), kept for cross-checking. */
  readonly autocannon: { readonly p50: number; readonly p99: number; readonly requestsAverage: number };
}

/** Per-connection state autocannon hands to setupRequest and back to onResponse (pipelining 1). */
interface Slot {
  sent?: Sent;
}

export async function runPhase(spec: PhaseSpec): Promise<PhaseResult> {
  const startedAt = performance.now();
  const recorder = new Recorder(startedAt);
  const interval = spec.rate === undefined ? 0 : 1000 / spec.rate;
  let sequence = 0;

  const request: autocannon.Request = {
    method: 'POST',
    path: spec.path,
    setupRequest: (req, context) => {
      const attempt = spec.traffic.next();
      const now = performance.now();
      const sent: Sent = { attempt, sentAt: now, intendedAt: interval === 0 ? now : startedAt + sequence++ * interval };
      (context as Slot).sent = sent;
      recorder.sent(sent);
      return { ...req, headers: { ...attempt.headers }, body: attempt.body };
    },
    onResponse: (status, body, context, headers) => {
      const sent = (context as Slot).sent;
      if (!sent) return;
      recorder.answered(sent, status, body, headers?.['idempotent-replayed'] === 'true', performance.now());
    },
  };

  const show = progressPrinter(spec, recorder);
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: spec.origin,
        connections: spec.connections,
        duration: spec.durationSeconds,
        ...(spec.rate !== undefined && { overallRate: spec.rate }),
        requests: [request],
      },
      (err: unknown, res: autocannon.Result) => (err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(res)),
    );
    instance.on('tick', () => show());
  });
  show(true);

  const recording = recorder.finish();
  const seconds = (performance.now() - startedAt) / 1000;
  return {
    ...recording,
    label: spec.label,
    durationSeconds: Math.round(seconds * 100) / 100,
    requestsPerSecond: Math.round(recording.answers / seconds),
    errors: result.errors,
    timeouts: result.timeouts,
    autocannon: { p50: result.latency.p50, p99: result.latency.p99, requestsAverage: result.requests.average },
  };
}

function progressPrinter(spec: PhaseSpec, recorder: Recorder): (final?: boolean) => void {
  const started = Date.now();
  let lastAnswers = 0;
  let lastAt = started;
  let lastLine = started;
  return (final = false) => {
    if (spec.progress === 'off') return;
    const now = Date.now();
    const elapsed = Math.min(spec.durationSeconds, (now - started) / 1000);
    // The last line shows the phase's average, the others the last second's rate.
    const [since, sinceAt] = final ? [0, started] : [lastAnswers, lastAt];
    const perSecond = Math.round(((recorder.answers - since) * 1000) / Math.max(1, now - sinceAt));
    lastAnswers = recorder.answers;
    lastAt = now;
    const width = 30;
    const done = Math.round((elapsed / spec.durationSeconds) * width);
    const text =
      `${spec.label.padEnd(22)} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${elapsed.toFixed(0)}/${spec.durationSeconds}s ` +
      `${String(perSecond).padStart(6)} req/s  201: ${recorder.count(201)}  409: ${recorder.count(409)}  5xx: ${recorder.count(500, 599)}`;
    if (spec.progress === 'bar') process.stderr.write(`\r${text}${final ? '\n' : ''}`);
    else if (final || (now - lastLine >= 5000 && elapsed < spec.durationSeconds)) {
      lastLine = now;
      process.stderr.write(`${text}\n`);
    }
  };
}
