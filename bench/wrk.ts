// Runs wrk (the load generator: a C event loop, so it is not the bottleneck the way per-request JS
// is) with bench/wrk/attempts.lua, and parses the JSON line its done() prints.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ticksToMicros } from './proc-cpu.ts';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'wrk', 'attempts.lua');
const MARKER = 'BENCH_RESULT ';
const STOPPED = 'BENCH_STOPPED';

export interface WrkRun {
  readonly url: string;
  readonly path: string;
  readonly body: string;
  /** File with one shopper token a line; the script sends them round-robin. */
  readonly tokensFile: string;
  readonly seconds: number;
  readonly connections: number;
  readonly threads: number;
  /** Stop early once this many 201s came back (one wrk thread only: each thread counts its own). */
  readonly stopAfter201?: number;
}

export interface WrkResult {
  readonly seconds: number;
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly statuses: Readonly<Record<string, number>>;
  /** Socket-level errors (connect, read, write, timeout); non-2xx answers are in statuses. */
  readonly socketErrors: number;
  readonly latencyMs: { readonly mean: number; readonly p50: number; readonly p90: number; readonly p99: number; readonly p999: number; readonly max: number };
  /** wrk's own CPU over the run, and as a share of one core per wrk thread (each thread is one event loop). */
  readonly cpuMicros: number;
  readonly cpuPercentOfOneCore: number;
  /** Date.now() when wrk exited: the end of the load. */
  readonly endedAt: number;
}

interface RawResult {
  durationMicros: number;
  requests: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyMicros: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
  statuses: Record<string, number>;
  cpuTicks: number;
}

/** Throws a clear error when wrk is not installed (scripts/install-bench-tools.sh installs it). */
export function wrkVersion(): string {
  try {
    // `wrk -v` prints its banner and exits 1.
    execFileSync('wrk', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const failure = error as { code?: string; stdout?: string };
    if (failure.code === 'ENOENT') throw new Error('wrk is not installed: run scripts/install-bench-tools.sh (as root) first');
    const banner = (failure.stdout ?? '').split('\n')[0]?.trim();
    if (banner) return banner;
  }
  return 'wrk (version unknown)';
}

export function runWrk(run: WrkRun): Promise<WrkResult> {
  const args = ['-t', String(run.threads), '-c', String(run.connections), '-d', `${run.seconds}s`, '-s', SCRIPT, run.url];
  const child = spawn('wrk', args, {
    env: { ...process.env, BENCH_TOKENS: run.tokensFile, BENCH_PATH: run.path, BENCH_BODY: run.body, BENCH_STOP_AFTER_201: run.stopAfter201 === undefined ? '' : String(run.stopAfter201) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
    // SIGINT makes wrk end the run now and still report (its main thread would sleep out the duration).
    if (run.stopAfter201 !== undefined && output.includes(STOPPED)) child.kill('SIGINT');
  });
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const endedAt = Date.now();
      const line = output.split('\n').find((candidate) => candidate.startsWith(MARKER));
      if (code !== 0 || !line) {
        reject(new Error(`wrk ${args.join(' ')} exited with ${code}:\n${output.slice(-2000)}`));
        return;
      }
      const raw = JSON.parse(line.slice(MARKER.length)) as RawResult;
      const seconds = raw.durationMicros / 1e6;
      const cpuMicros = ticksToMicros(raw.cpuTicks);
      const ms = (micros: number) => micros / 1000;
      resolve({
        seconds,
        requests: raw.requests,
        requestsPerSecond: raw.requests / seconds,
        statuses: raw.statuses,
        socketErrors: raw.errors.connect + raw.errors.read + raw.errors.write + raw.errors.timeout,
        latencyMs: {
          mean: ms(raw.latencyMicros.mean),
          p50: ms(raw.latencyMicros.p50),
          p90: ms(raw.latencyMicros.p90),
          p99: ms(raw.latencyMicros.p99),
          p999: ms(raw.latencyMicros.p999),
          max: ms(raw.latencyMicros.max),
        },
        cpuMicros,
        cpuPercentOfOneCore: (100 * cpuMicros) / raw.durationMicros / run.threads,
        endedAt,
      });
    });
  });
}
