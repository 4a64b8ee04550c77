// The service run as a real process by the tests that check what only a process shows (start-up,
// the cluster, the compiled build, SIGTERM): its environment on the test file's namespace and
// database, waiting for it over HTTP, and stopping it with SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from './context.ts';

/** What a spawned service needs to run on this test file's Redis namespace and database, plus `overrides`. */
export function serviceEnvironment(ctx: TestContext, overrides: Record<string, string> = {}): NodeJS.ProcessEnv {
  // The test's own variables but for its log level: a spawned service's warnings show in the test output.
  return { PATH: process.env.PATH, ...ctx.env, LOG_LEVEL: 'warn', ...overrides };
}

/** `node …args` from `cwd` (the repository by default), its output on the test's. */
export function spawnService(args: readonly string[], env: NodeJS.ProcessEnv, cwd?: string): ChildProcess {
  return spawn(process.execPath, args, { ...(cwd !== undefined && { cwd }), env, stdio: ['ignore', 'inherit', 'inherit'] });
}

/** Polls `url` until it answers 200, and returns that answer. */
export async function waitFor200(url: string, timeoutMs: number): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      if (response.status === 200) return response;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await sleep(100);
  }
}

export const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null;

/** Sends SIGTERM and waits for the exit: its code, and how long it took. */
export async function terminate(child: ChildProcess): Promise<{ code: number | null; elapsedMs: number }> {
  const started = Date.now();
  const exited = once(child, 'exit') as Promise<[number | null]>;
  child.kill('SIGTERM');
  const [code] = await exited;
  return { code, elapsedMs: Date.now() - started };
}
