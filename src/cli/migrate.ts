// `npm run migrate` (node dist/cli/migrate.js): applies pending migrations to DATABASE_URL; exits non-zero on any failure.
import { loadConfigOrExit } from '../config.ts';
import { createLogger } from '../logger.ts';
import { migrate } from '../db/migrate.ts';

const config = loadConfigOrExit();
const logger = createLogger(config);
try {
  const applied = await migrate({ databaseUrl: config.databaseUrl, log: (message) => logger.info(message) });
  logger.info({ applied: applied.length }, applied.length > 0 ? 'migrations applied' : 'database is up to date');
} catch (error) {
  logger.fatal({ err: error }, 'migration failed');
  process.exitCode = 1;
}
