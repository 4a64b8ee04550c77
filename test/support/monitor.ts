// Redis MONITOR on a raw socket, to prove that a path sent no command naming some keys. A plain
// socket rather than ioredis's monitor(): under other test files' traffic ioredis can receive the
// first monitored line before it has switched modes, and throws a command-queue error.
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { expect } from 'vitest';

export interface Monitor {
  /** Monitored lines that mention `needle`, since the start or the last clear(). */
  readonly lines: readonly string[];
  clear(): void;
  /** Sends a command naming `marker` and waits until MONITOR shows it: every earlier line is in. */
  drain(marker: string): Promise<void>;
  close(): Promise<void>;
}

/** Watches every command Redis runs and keeps the lines that mention `needle` (e.g. a key prefix). */
export async function monitorRedis(redisUrl: string, needle: string): Promise<Monitor> {
  const url = new URL(redisUrl);
  const socket: Socket = connect({ host: url.hostname, port: Number(url.port || 6379) });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const lines: string[] = [];
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    pending += chunk;
    const parts = pending.split('\r\n');
    pending = parts.pop() ?? '';
    for (const line of parts) if (line.includes(needle)) lines.push(line);
  });
  const ok = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  socket.write('MONITOR\r\n');
  await ok;
  const client = new Redis(redisUrl);
  return {
    lines,
    clear: () => void lines.splice(0),
    async drain(marker) {
      await client.exists(marker);
      await expect.poll(() => lines.some((line) => line.includes(marker)), { timeout: 5_000 }).toBe(true);
    },
    async close() {
      socket.destroy();
      await client.quit();
    },
  };
}
