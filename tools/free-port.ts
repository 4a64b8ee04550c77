// Free TCP ports on 127.0.0.1 for the servers and service processes the tests, the load kit,
// the demo and the benchmark start.
import { createServer } from 'node:net';

// Ports handed out by this process are not handed out again, so parallel starts do not collide.
const handedOut = new Set<number>();

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function findFreePort(): Promise<number> {
  for (;;) {
    const port = await listenOnce(0);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Binds `port` (0: any) on 127.0.0.1 and lets it go; resolves with the port, rejects when it is taken. */
export function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : port;
      server.close(() => resolve(bound));
    });
  });
}

