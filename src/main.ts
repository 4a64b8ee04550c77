// Entry point: `node dist/main.js [all|api|worker]` (compiled by `npm run build`; `tsx src/main.ts` in development)
// runs the chosen roles (`all` migrates first) and exits gracefully on SIGTERM/SIGINT (a second signal, or the
// shutdown timeout, exits at once).
import closeWithGrace from 'close-with-grace';
import { loadConfigOrExit, type Role } from './config.ts';
import { migrate } from './db/migrate.ts';
import { createLogger } from './logger.ts';
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

try {
  // One machine, one command: `npm start` brings the schema up to date itself. Scaled-out
  // roles leave that to `npm run migrate` (the compose file's one-shot migrate service).
  if (role === 'all') await migrate({ databaseUrl: config.databaseUrl, log: (message) => logger.info(message) });
  const service = await startService(config, logger, role);
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an unhandled error');
    else logger.info({ signal }, 'shutting down');
    await service.stop();
  });
} catch (err) {
  logger.fatal({ err }, 'start-up failed');
  process.exit(1);
}
