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

/** One way to get a server: the URL given, else a container, else a private process. */
interface Source {
  readonly given: string | undefined;
  container(): Promise<{ readonly url: string; stop(): Promise<unknown> }>;
  local(): Promise<{ readonly url: string; stop(): Promise<void> }>;
}

async function provide(source: Source, stops: Stop[]): Promise<string> {
  if (source.given) return source.given;
  const server = (await dockerAnswers()) ? await source.container() : await source.local();
  stops.push(async () => void (await server.stop()));
  return server.url;
}

const REDIS: Source = {
  given: process.env.REDIS_URL,
  async container() {
    const { RedisContainer } = await import('@testcontainers/redis');
    const container = await new RedisContainer('redis:7').start();
    return { url: container.getConnectionUrl(), stop: () => container.stop() };
  },
  local: () => startLocalRedis(),
};

const POSTGRES: Source = {
  given: process.env.DATABASE_URL,
  async container() {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:15').start();
    return { url: container.getConnectionUri(), stop: () => container.stop() };
  },
  local: () => startLocalPostgres(),
};

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
  const [redisUrl, postgresUrl] = await Promise.all([provide(REDIS, stops), provide(POSTGRES, stops)]);
  const templateDatabase = `${runId}_template`;
  await migrate({ databaseUrl: withDatabase(postgresUrl, templateDatabase) });
  project.provide('services', { redisUrl, postgresUrl, templateDatabase, runId });

  return async () => {
    await dropRunDatabases(postgresUrl, runId).catch(() => {});
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
}
