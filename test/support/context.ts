// Per-test-file isolation: a fresh database cloned from the migrated template and a Redis key
// prefix of its own, so files run in parallel without FLUSHALL or truncation.
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/config.ts';
import { dropDatabase, onServer, withDatabase } from '../../tools/databases.ts';
import { deleteServiceKeys } from '../../tools/redis-keys.ts';

export const TEST_JWT_SECRET = 'test-secret-with-at-least-16-chars';

export interface TestContext {
  readonly config: Config;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly prefix: string;
  /** The variables `config` was loaded from: a spawned process given them runs on this file's database and namespace. */
  readonly env: Readonly<Record<string, string>>;
  /** Builds a config for this file's database and namespace, with overrides (e.g. a private server). */
  configWith(overrides: Record<string, string>): Config;
  /** Drops this file's keys (the BullMQ queue's too) and database. */
  cleanup(): Promise<void>;
}

const CLONE_RETRIES = 20;

async function cloneTemplate(postgresUrl: string, template: string, database: string): Promise<void> {
  await onServer(postgresUrl, async (admin) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)} TEMPLATE ${pg.escapeIdentifier(template)}`);
        return;
      } catch (error) {
        // 55006: another file is cloning the template at this instant; take turns.
        if ((error as { code?: string }).code !== '55006' || attempt >= CLONE_RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
    }
  });
}

export async function createTestContext(): Promise<TestContext> {
  const services = inject('services');
  const suffix = randomBytes(4).toString('hex');
  const database = `${services.runId}_${suffix}`;
  await cloneTemplate(services.postgresUrl, services.templateDatabase, database);
  const prefix = `t${suffix}`;
  const base = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    JWT_SECRET: TEST_JWT_SECRET,
    REDIS_URL: services.redisUrl,
    REDIS_PREFIX: prefix,
    DATABASE_URL: withDatabase(services.postgresUrl, database),
    PORT: '0',
    METRICS_PORT: '0',
    // Tests share two cores with each other: load shedding would refuse at random. The
    // load-shedding test turns it on for itself.
    SHED_EVENT_LOOP_DELAY_MS: '0',
  };
  const configWith = (overrides: Record<string, string>) => loadConfig({ ...base, ...overrides });
  return {
    config: configWith({}),
    databaseUrl: base.DATABASE_URL,
    redisUrl: services.redisUrl,
    prefix,
    env: base,
    configWith,
    async cleanup() {
      await deleteServiceKeys(services.redisUrl, prefix);
      await dropDatabase(base.DATABASE_URL);
    },
  };
}
