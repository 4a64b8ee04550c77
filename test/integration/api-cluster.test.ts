// API_PROCESSES=2: the real entry point (`src/main.ts all`) runs as a node:cluster — two API processes
// sharing the port, one worker process, a primary supervising them and serving their metrics together.
// Which process answered is read from the outside (/proc: the primary's children and the connections each
// holds), never from anything the service tells its clients.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type TestContext } from '../support/context.ts';
import { saleBody, tokens, type Tokens } from '../support/api.ts';
import { hasExited, serviceEnvironment, spawnService, terminate } from '../support/service-process.ts';
import { findFreePort } from '../../tools/free-port.ts';

const SHUTDOWN_TIMEOUT_MS = 5_000;

let ctx: TestContext;
let tk: Tokens;
let primary: ChildProcess;
let port: number;
let metricsPort: number;

interface Reply {
  status: number;
  body: string;
}

/** One request; `agent` false opens a connection of its own, which the cluster hands to its next process. */
function request(method: string, path: string, options: { body?: unknown; auth?: string; agent?: http.Agent | false } = {}): Promise<Reply> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: options.agent ?? false,
        headers: {
          ...(payload !== undefined && { 'content-type': 'application/json' }),
          ...(options.auth !== undefined && { authorization: options.auth }),
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve()
      .then(check)
      .catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface ClusterChild {
  pid: number;
  args: string[];
}

/** The primary's node children, with their arguments (`… src/main.ts <role> <name>`). */
function clusterChildren(primaryPid: number): ClusterChild[] {
  const children: ClusterChild[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== primaryPid) continue;
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (args.some((arg) => arg.endsWith('src/main.ts'))) children.push({ pid: Number(entry), args });
    } catch {
      // the process ended while we looked
    }
  }
  return children;
}

const apiChildren = (): ClusterChild[] => clusterChildren(primary.pid!).filter((child) => child.args.at(-2) === 'api');

/** Established TCP connections on `localPort` whose socket process `pid` holds: the connections it accepted. */
function acceptedConnections(pid: number, localPort: number): number {
  const inodes = new Set<string>();
  for (const line of readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    const local = fields[1]!;
    if (parseInt(local.split(':')[1]!, 16) === localPort && fields[3] === '01') inodes.add(fields[9]!);
  }
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode !== undefined && inodes.has(inode)) count++;
    } catch {
      // closed while we looked
    }
  }
  return count;
}

async function scrape(): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** The `process` label values of a per-process series in the aggregated metrics. */
const processesIn = (metrics: string): string[] =>
  [...metrics.matchAll(/^process_cpu_user_seconds_total\{process="([^"]+)"\}/gm)].map((match) => match[1]!).sort();

/** The value of one aggregated series, found by its name and labels as they are printed. */
function seriesValue(metrics: string, series: string): number | undefined {
  const line = metrics.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function createSale(items: Parameters<typeof saleBody>[0]) {
  const body = saleBody(items);
  const created = await request('POST', '/v1/admin/sales', { body, auth: tk.admin() });
  expect(created.status, created.body).toBe(201);
  return body;
}

/** `src/main.ts all` with API_PROCESSES=2 on this file's database and namespace. */
function spawnCluster(apiPort: number, metricsListenerPort: number): ChildProcess {
  return spawnService(
    ['--import', 'tsx', 'src/main.ts', 'all'],
    serviceEnvironment(ctx, {
      PORT: String(apiPort),
      METRICS_PORT: String(metricsListenerPort),
      API_PROCESSES: '2',
      RATE_LIMIT_USER_PER_SEC: '0',
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    }),
  );
}

beforeAll(async () => {
  ctx = await createTestContext();
  tk = tokens(ctx.config.jwtSecret);
  [port, metricsPort] = [await findFreePort(), await findFreePort()];
  primary = spawnCluster(port, metricsPort);
  // Ready when all three processes report their metrics to the primary.
  await until('the cluster to be ready', async () => ((processesIn(await scrape()).length === 3 ? true : undefined)), 30_000);
}, 40_000);

afterAll(async () => {
  if (!hasExited(primary)) primary.kill('SIGKILL');
  await ctx.cleanup();
});

describe('API_PROCESSES=2', () => {
  it('when started, then the primary runs two API processes and one worker process, all in the aggregated /metrics', async () => {
    const children = clusterChildren(primary.pid!);
    expect(children.map((child) => child.args.slice(-2).join(' ')).sort()).toEqual(['api api-1', 'api api-2', 'worker worker']);
    const metrics = await scrape();
    expect(processesIn(metrics)).toEqual(['api-1', 'api-2', 'worker']);
    expect(metrics).toContain('# TYPE flashsale_reservations_total counter');
    expect(metrics).toContain('flashsale_queue_jobs{state="waiting"}');
    // The storefront port serves no metrics, and the API answers without naming its process.
    const live = await request('GET', '/health/live');
    expect(live.status).toBe(200);
    expect(live.body).not.toContain(String(children[0]!.pid));
    expect((await request('GET', '/metrics')).status).toBe(404);
  });

  it('when clients open connections at once, then both API processes accept some of them', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    try {
      const replies = await Promise.all(Array.from({ length: 8 }, () => request('GET', '/health/live', { agent })));
      expect(replies.map((reply) => reply.status)).toEqual(Array(8).fill(200));
      // The keep-alive connections stay open: count them where they were accepted.
      const perProcess = apiChildren().map((child) => acceptedConnections(child.pid, port));
      expect(perProcess).toHaveLength(2);
      expect(perProcess.reduce((sum, count) => sum + count, 0)).toBe(8);
      for (const count of perProcess) expect(count).toBeGreaterThan(0);
    } finally {
      agent.destroy();
    }
    // Their requests are counted once each in the aggregate, whichever process answered.
    const metrics = await scrape();
    expect(seriesValue(metrics, 'http_request_duration_seconds_count{method="GET",route="/health/live",status_code="200"}')).toBeGreaterThanOrEqual(9);
  });

  it('when an order is placed through the cluster, then it is persisted exactly once and counted once', async () => {
    const sale = await createSale([{ sku: 'one', stock: 5 }]);
    const placed = await request('POST', `/v1/sales/${sale.id}/orders`, { body: { sku: 'one', quantity: 1 }, auth: tk.shopper('u-persist') });
    expect(placed.status, placed.body).toBe(201);
    const { orderId } = JSON.parse(placed.body) as { orderId: string };
    const db = new pg.Client({ connectionString: ctx.databaseUrl });
    await db.connect();
    try {
      const rows = await until('the order to reach Postgres', async () => {
        const result = await db.query<{ id: string }>('SELECT id FROM orders WHERE sale_id = $1', [sale.id]);
        return result.rows.length > 0 ? result.rows : undefined;
      });
      expect(rows).toEqual([{ id: orderId }]);
      const sold = await db.query<{ sold: number }>('SELECT sold FROM sale_items WHERE sale_id = $1 AND sku = $2', [sale.id, 'one']);
      expect(sold.rows).toEqual([{ sold: 1 }]);
    } finally {
      await db.end();
    }
    const metrics = await scrape();
    expect(seriesValue(metrics, `flashsale_reservations_total{sale="${sale.id}",sku="one",result="ok"}`)).toBe(1);
    expect(seriesValue(metrics, 'flashsale_orders_persisted_total')).toBe(1);
  });

  it('when an item sold out on both API processes is restocked, then both accept orders for it at once', async () => {
    const sale = await createSale([{ sku: 'hot', stock: 1, perUserLimit: 1 }]);
    const first = await request('POST', `/v1/sales/${sale.id}/orders`, { body: { sku: 'hot', quantity: 1 }, auth: tk.shopper('u-first') });
    expect(first.status, first.body).toBe(201);
    // Fresh connections alternate between the processes: each meets SOLD_OUT and marks the item closed.
    for (let i = 0; i < 6; i++) {
      const refused = await request('POST', `/v1/sales/${sale.id}/orders`, { body: { sku: 'hot', quantity: 1 }, auth: tk.shopper(`u-late-${i}`) });
      expect(refused.status).toBe(409);
      expect(JSON.parse(refused.body)).toMatchObject({ code: 'SOLD_OUT' });
    }
    const restocked = await request('POST', `/v1/admin/sales/${sale.id}/items/hot/restock`, { body: { quantity: 4 }, auth: tk.admin() });
    expect(restocked.status, restocked.body).toBe(200);
    // Well inside the marks' one-second life: only the reopening announcement lets these through.
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const order = await request('POST', `/v1/sales/${sale.id}/orders`, { body: { sku: 'hot', quantity: 1 }, auth: tk.shopper(`u-again-${i}`) });
      statuses.push(order.status);
    }
    expect(statuses).toEqual([201, 201, 201, 201]);
  });

  it('when an API process is SIGKILLed, then the primary replaces it and the cluster serves on', async () => {
    const [victim] = apiChildren();
    process.kill(victim!.pid, 'SIGKILL');
    const name = victim!.args.at(-1);
    const replacement = await until('a replacement process', () =>
      apiChildren().find((child) => child.args.at(-1) === name && child.pid !== victim!.pid),
    );
    expect(replacement.pid).not.toBe(victim!.pid);
    await until('the replacement to report its metrics', async () => (processesIn(await scrape()).length === 3 ? true : undefined));
    expect(processesIn(await scrape())).toEqual(['api-1', 'api-2', 'worker']);
    const replies = await Promise.all(Array.from({ length: 4 }, () => request('GET', '/health/ready')));
    expect(replies.map((reply) => reply.status)).toEqual([200, 200, 200, 200]);
  });

  it('when the primary gets SIGTERM, then every process exits and the primary exits 0 within the shutdown bound', async () => {
    const pids = [primary.pid!, ...clusterChildren(primary.pid!).map((child) => child.pid)];
    expect(pids).toHaveLength(4);
    const { code, elapsedMs } = await terminate(primary);
    expect(code).toBe(0);
    expect(elapsedMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    for (const pid of pids) expect(existsSync(`/proc/${pid}`), `process ${pid} still runs`).toBe(false);
  });
});

describe('API_PROCESSES=2, stopped while starting', () => {
  it('when the primary gets SIGTERM before its processes are ready, then /metrics has refused to answer for them and it exits 0', async () => {
    const startingMetricsPort = await findFreePort();
    const starting = spawnCluster(await findFreePort(), startingMetricsPort);
    try {
      // Its processes exist but are still loading: none has started serving yet.
      await until('the processes to be forked', () => (clusterChildren(starting.pid!).length === 3 ? true : undefined), 10_000);
      // Meanwhile a scrape fails rather than report an empty cluster as a healthy one.
      expect((await fetch(`http://127.0.0.1:${startingMetricsPort}/metrics`)).status).toBe(500);
      expect((await terminate(starting)).code).toBe(0);
    } finally {
      if (!hasExited(starting)) starting.kill('SIGKILL');
    }
  });
});

describe('API_PROCESSES=2, stopping and failing', () => {
  async function startedCluster(): Promise<{ cluster: ChildProcess; apiPort: number }> {
    const [apiPort, metricsListenerPort] = [await findFreePort(), await findFreePort()];
    const cluster = spawnCluster(apiPort, metricsListenerPort);
    await until('the cluster to be ready', async () => {
      const response = await fetch(`http://127.0.0.1:${metricsListenerPort}/metrics`);
      return response.status === 200 && processesIn(await response.text()).length === 3 ? true : undefined;
    }, 30_000);
    return { cluster, apiPort };
  }

  it('when SIGTERM arrives during a request, then the request is answered before its process exits, and the primary exits 0', async () => {
    const { cluster, apiPort } = await startedCluster();
    try {
      const body = JSON.stringify(saleBody([{ sku: 'slow', stock: 3 }]));
      // The request's headers and half its body are in before the signal; the rest comes after it.
      const reply = new Promise<number>((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: apiPort,
            method: 'POST',
            path: '/v1/admin/sales',
            agent: false,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: tk.admin() },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.write(body.slice(0, 20));
        setTimeout(() => req.end(body.slice(20)), 500);
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      const stopping = terminate(cluster);
      expect(await reply).toBe(201);
      expect((await stopping).code).toBe(0);
    } finally {
      if (!hasExited(cluster)) cluster.kill('SIGKILL');
    }
  });

  it('when an API process keeps dying, then after three restarts within a minute the cluster stops with exit code 1', async () => {
    const { cluster } = await startedCluster();
    try {
      const exited = once(cluster, 'exit') as Promise<[number | null]>;
      const api1 = () => clusterChildren(cluster.pid!).find((child) => child.args.at(-1) === 'api-1');
      let victim = api1()!;
      const survivors: number[] = [];
      for (let kill = 1; kill <= 4; kill++) {
        if (kill === 4) survivors.push(...clusterChildren(cluster.pid!).filter((child) => child.pid !== victim.pid).map((child) => child.pid));
        process.kill(victim.pid, 'SIGKILL');
        if (kill === 4) break;
        const previous = victim.pid;
        victim = await until(`restart ${kill}`, () => {
          const next = api1();
          return next && next.pid !== previous ? next : undefined;
        });
      }
      const [code] = await exited;
      expect(code).toBe(1);
      // The other processes were stopped, not orphaned.
      expect(survivors).toHaveLength(2);
      for (const pid of survivors) expect(existsSync(`/proc/${pid}`), `process ${pid} still runs`).toBe(false);
    } finally {
      if (!hasExited(cluster)) cluster.kill('SIGKILL');
    }
  });
});
