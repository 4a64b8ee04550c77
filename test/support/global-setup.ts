// Vitest global setup for integration tests: finds Redis and Postgres once per run — from
// REDIS_URL/DATABASE_URL, else testcontainers when a Docker engine answers, else private servers
// started from the machine's binaries — and migrates a template database each test file clones.
import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { onServer, withDatabase } from '../../tools/databases.ts';
import { startLocalPostgres, startLocalRedis } from '../../tools/local-servers.ts';

export interface TestServices {
  readonly redisUrl: string;
  /** A URL of the Postgres server; each file creates its own database on it. */
  readonly postgresUrl: string;
  readonly templateDatabase: string;
  /** Prefix of every database and Redis namespace this run creates, so teardown finds them. */
  readonly runId: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    services: TestServices;
  }
}

type Stop = () => Promise<void>;

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

async function provideRedis(stops: Stop[]): Promise<string> {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  if (await dockerAnswers()) {
    const { RedisContainer } = await import('@testcontainers/redis');
    const container = await new RedisContainer('redis:7').start();
    stops.push(async () => void (await container.stop()));
    return container.getConnectionUrl();
  }
  const server = await startLocalRedis();
  stops.push(() => server.stop());
  return server.url;
}

async function providePostgres(stops: Stop[]): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  if (await dockerAnswers()) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:15').start();
    stops.push(async () => void (await container.stop()));
    return container.getConnectionUri();
  }
  const server = await startLocalPostgres();
  stops.push(() => server.stop());
  return server.url;
}

async function dropRunDatabases(postgresUrl: string, runId: string): Promise<void> {
  await onServer(postgresUrl, async (admin) => {
    const { rows } = await admin.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE $1 || '%'",
      [runId],
    );
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`);
  });
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: Stop[] = [];
  const runId = `fst_${randomBytes(4).toString('hex')}`;
  const [redisUrl, postgresUrl] = await Promise.all([provideRedis(stops), providePostgres(stops)]);
  const templateDatabase = `${runId}_template`;
  await migrate({ databaseUrl: withDatabase(postgresUrl, templateDatabase) });
  project.provide('services', { redisUrl, postgresUrl, templateDatabase, runId });

  return async () => {
    await dropRunDatabases(postgresUrl, runId).catch(() => {});
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
}
