// The cluster primary (API_PROCESSES > 1, roles api and all): forks the API processes, which share the HTTP
// port through node:cluster, and for `all` one worker process (outbox persister, refused-batch worker, expiry sweeper) so the
// worker role still runs exactly once. The primary itself serves no requests and runs no worker: it only
// supervises and serves the cluster's aggregated metrics, so a crash in any real work costs one process,
// which is restarted (RESTARTS_PER_MINUTE at most, then the whole cluster stops with exit code 1).
// SIGTERM/SIGINT stops every process gracefully and exits 0 once all have exited cleanly; a second signal
// kills them and exits at once.
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { startMetricsServer } from '../metrics.ts';
import { clusterMetricsSource, isReady } from './messages.ts';
import { RestartBudget } from './restart-budget.ts';

export interface ClusterProcessSlot {
  /** Its name in logs and in the `process` label of its process metrics; kept across restarts. */
  readonly name: string;
  readonly role: 'api' | 'worker';
}

const RESTARTS_PER_MINUTE = 3;
// A process that does not answer a metrics request in time is left out of that scrape.
const METRICS_REPLY_TIMEOUT_MS = 2_000;
// Each process bounds its own shutdown by SHUTDOWN_TIMEOUT_MS; the primary waits that and a little more.
const EXIT_MARGIN_MS = 2_000;

export function clusterSlots(role: 'api' | 'all', apiProcesses: number): ClusterProcessSlot[] {
  const slots: ClusterProcessSlot[] = Array.from({ length: apiProcesses }, (_, i) => ({ name: `api-${i + 1}`, role: 'api' }));
  if (role === 'all') slots.push({ name: 'worker', role: 'worker' });
  return slots;
}

export async function runClusterPrimary(config: Config, logger: Logger, role: 'api' | 'all'): Promise<void> {
  const slots = clusterSlots(role, config.apiProcesses);
  const running = new Map<ClusterProcessSlot, Worker>();
  const ready = new Set<Worker>();
  const budgets = new Map(slots.map((slot) => [slot, new RestartBudget(RESTARTS_PER_MINUTE, 60_000)]));
  let stopping = false;
  let cleanExit = true;

  // Until every process has been ready once, a scrape fails rather than report a partial cluster as whole;
  // afterwards a process being restarted is only missing from the scrapes until it is ready again.
  let started = false;
  const aggregate = clusterMetricsSource(() => [...ready], METRICS_REPLY_TIMEOUT_MS);
  const metricsSource = {
    contentType: aggregate.contentType,
    metrics: () => (started ? aggregate.metrics() : Promise.reject(new Error('the cluster is starting'))),
  };
  const metricsServer = await startMetricsServer(metricsSource, config.metrics.host, config.metrics.port);

  const finish = async () => {
    await metricsServer.close();
    logger.info({ role, clean: cleanExit }, 'cluster stopped');
    process.exit(cleanExit ? 0 : 1);
  };

  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const worker of running.values()) worker.process.kill('SIGTERM');
    setTimeout(() => {
      logger.error({ processes: [...running.keys()].map((slot) => slot.name) }, 'processes did not stop in time; killing them');
      killAll();
      process.exit(1);
    }, config.shutdownTimeoutMs + EXIT_MARGIN_MS);
    if (running.size === 0) void finish();
  };

  const killAll = () => {
    for (const worker of running.values()) worker.process.kill('SIGKILL');
  };

  const onExit = (slot: ClusterProcessSlot, code: number | null, signal: string | null) => {
    if (stopping) {
      // Killed by our SIGTERM itself: it was still starting (no handler yet), so it had nothing in flight.
      if (code !== 0 && signal !== 'SIGTERM') cleanExit = false;
      if (running.size === 0) void finish();
      return;
    }
    logger.error({ process: slot.name, code, signal }, 'cluster process exited unexpectedly');
    if (!budgets.get(slot)!.take(Date.now())) {
      logger.fatal({ process: slot.name, limit: RESTARTS_PER_MINUTE }, 'cluster process keeps exiting; stopping the cluster');
      cleanExit = false;
      stop();
      return;
    }
    fork(slot);
  };

  const fork = (slot: ClusterProcessSlot) => {
    // The forked process runs this same entry point; its arguments name its role and its slot.
    cluster.setupPrimary({ args: [slot.role, slot.name] });
    const worker = cluster.fork();
    running.set(slot, worker);
    worker.on('message', (message: unknown) => {
      if (!isReady(message)) return;
      ready.add(worker);
      started ||= ready.size === slots.length;
      logger.info({ process: slot.name, role: slot.role }, 'cluster process ready');
    });
    worker.on('exit', (code: number | null, signal: string | null) => {
      ready.delete(worker);
      running.delete(slot);
      onExit(slot, code, signal);
    });
  };

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.error({ signal }, 'second signal; exiting at once');
      killAll();
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal }, 'shutting down the cluster');
    stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  for (const slot of slots) fork(slot);
  logger.info({ role, processes: slots.map((slot) => slot.name), metricsPort: metricsServer.port }, 'cluster started');
}
