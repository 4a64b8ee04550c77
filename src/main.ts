// Entry point: `node dist/main.js [all|api|worker]` (compiled by `npm run build`; `tsx src/main.ts` in development)
// runs the chosen roles (`all` migrates first) and exits gracefully on SIGTERM/SIGINT (a second signal, or the
// shutdown timeout, exits at once). With API_PROCESSES > 1 the api and all roles run as a node:cluster
// (src/cluster/primary.ts), whose processes re-enter here as cluster workers: `main.js <api|worker> <name>`.
import cluster from 'node:cluster';
import closeWithGrace from 'close-with-grace';
import { runClusterPrimary } from './cluster/primary.ts';
import { joinCluster } from './cluster/messages.ts';
import { loadConfigOrExit, type Config, type Role } from './config.ts';
import { migrate } from './db/migrate.ts';
import { createLogger, type Logger } from './logger.ts';
import { startService } from './service.ts';

const ROLES: readonly Role[] = ['all', 'api', 'worker'];

const requested = process.argv[2] ?? 'all';
if (!ROLES.includes(requested as Role)) {
  process.stderr.write(`unknown role "${requested}"; use one of: ${ROLES.join(', ')}\n`);
  process.exit(2);
}
const role = requested as Role;

const config = loadConfigOrExit();
const logger = createLogger(config);

/** Runs `role` in this process until a signal stops it; `clusterProcess` names it when a cluster primary forked it. */
async function serve(config: Config, rootLogger: Logger, role: Role, clusterProcess: string | undefined): Promise<void> {
  const logger = clusterProcess === undefined ? rootLogger : rootLogger.child({ process: clusterProcess });
  // Ctrl-C reaches the whole process group; in a cluster only the primary acts on SIGINT, and stops its
  // processes with SIGTERM — else each would see two signals and exit at once instead of draining.
  if (clusterProcess !== undefined) process.on('SIGINT', () => {});
  const service = await startService(config, logger, role, clusterProcess === undefined ? {} : { clusterProcess });
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger, skip: clusterProcess === undefined ? [] : ['SIGINT'] }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an unhandled error');
    else logger.info({ signal }, 'shutting down');
    await service.stop();
  });
  if (clusterProcess !== undefined) joinCluster(service.metrics.registry);
}

try {
  if (cluster.isWorker) {
    await serve(config, logger, role, process.argv[3] ?? `process-${cluster.worker?.id ?? 0}`);
  } else {
    // One machine, one command: `npm start` brings the schema up to date itself, once, before any process
    // serves. Scaled-out roles leave that to `npm run migrate` (the compose file's one-shot migrate service).
    if (role === 'all') await migrate({ databaseUrl: config.databaseUrl, log: (message) => logger.info(message) });
    if (role !== 'worker' && config.apiProcesses > 1) await runClusterPrimary(config, logger, role);
    else await serve(config, logger, role, undefined);
  }
} catch (err) {
  logger.fatal({ err }, 'start-up failed');
  process.exit(1);
}
