// The container deployment's promises, read from docker-compose.yml, the Dockerfile and
// .dockerignore: durable Redis, health-gated start order, and each role's configuration.
import { describe, expect, it } from 'vitest';
import { composeServices, objectAt, readRepoFile as read, repoFileExists } from '../support/repo-files.ts';

// tsconfig.build.json compiles src/x.ts to dist/x.js (rootDir src, outDir dist).
const sourceOf = (compiled: string): string => compiled.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts');

// The contract's configuration variables, plus settings the config module also reads (docs/design.md lists all).
const CONTRACT_VARIABLES = [
  'PORT',
  'HOST',
  'METRICS_PORT',
  'REDIS_URL',
  'REDIS_CLUSTER_NODES',
  'DATABASE_URL',
  'JWT_SECRET',
  'RATE_LIMIT_USER_PER_SEC',
  'RATE_LIMIT_IP_PER_SEC',
  'TRUST_PROXY',
  'LOG_LEVEL',
];
const EXTRA_VARIABLES = ['NODE_ENV', 'API_PROCESSES', 'REDIS_PREFIX', 'SHUTDOWN_TIMEOUT_MS', 'QUEUE_LOCK_DURATION_MS', 'SHED_EVENT_LOOP_DELAY_MS'];
const NODE_SERVICES = ['migrate', 'api', 'worker'] as const;

const { names: serviceNames, service, environment } = composeServices();

function commandText(name: string): string {
  const command = service(name)['command'];
  return Array.isArray(command) ? command.map(String).join(' ') : String(command);
}

function healthcheckText(name: string): string {
  const test = objectAt(service(name)['healthcheck'], `services.${name}.healthcheck`)['test'];
  return Array.isArray(test) ? test.map(String).join(' ') : String(test);
}

function dependsOn(name: string): Record<string, string> {
  const deps = objectAt(service(name)['depends_on'], `services.${name}.depends_on`);
  return Object.fromEntries(
    Object.entries(deps).map(([dep, spec]) => [dep, String(objectAt(spec, `${name}.depends_on.${dep}`)['condition'])]),
  );
}

describe('docker-compose.yml', () => {
  it('when read, then it defines redis, postgres, migrate, api and worker, watched by prometheus and grafana', () => {
    expect([...serviceNames].sort()).toEqual(['api', 'grafana', 'migrate', 'postgres', 'prometheus', 'redis', 'worker']);
  });

  it('when Redis starts, then it keeps an AOF fsynced every second and refuses to evict keys', () => {
    const command = commandText('redis');
    expect(service('redis')['image']).toMatch(/^redis:7/);
    expect(command).toMatch(/--appendonly yes/);
    expect(command).toMatch(/--appendfsync everysec/);
    expect(command).toMatch(/--maxmemory-policy noeviction/);
  });

  it('when the stores start, then each has a healthcheck that asks the server itself', () => {
    expect(healthcheckText('redis')).toMatch(/redis-cli ping/);
    expect(healthcheckText('postgres')).toMatch(/pg_isready/);
    expect(service('postgres')['image']).toMatch(/^postgres:15/);
    expect(objectAt(service('postgres')['environment'], 'postgres.environment')['POSTGRES_DB']).toBe('flashsale');
  });

  it('when api and worker start, then they wait for healthy stores and a completed migration', () => {
    for (const name of ['api', 'worker']) {
      expect(dependsOn(name)).toEqual({
        redis: 'service_healthy',
        postgres: 'service_healthy',
        migrate: 'service_completed_successfully',
      });
    }
    expect(dependsOn('migrate')).toEqual({ redis: 'service_healthy', postgres: 'service_healthy' });
    expect(service('migrate')['restart']).toBe('no');
  });

  it('when the node services are built, then all come from the Dockerfile and run its compiled entry points', () => {
    for (const name of NODE_SERVICES) {
      const build = objectAt(service(name)['build'], `services.${name}.build`);
      expect(build['dockerfile']).toBe('Dockerfile');
      expect(build['context']).toBe('.');
    }
    // node runs the JavaScript directly: no npm in between (it would not pass SIGTERM on), no
    // TypeScript compiled at start-up (the image has no compiler).
    expect(commandText('migrate')).toBe('node dist/cli/migrate.js');
    expect(commandText('api')).toBe('node dist/main.js api');
    expect(commandText('worker')).toBe('node dist/main.js worker');
    for (const name of NODE_SERVICES) expect(repoFileExists(sourceOf(commandText(name).split(' ')[1] ?? ''))).toBe(true);
  });

  it('when the node services are configured, then each sets what it needs and nothing outside the contract', () => {
    for (const name of NODE_SERVICES) {
      const env = environment(name);
      expect(env['REDIS_URL']).toBe('redis://redis:6379');
      expect(env['DATABASE_URL']).toMatch(/^postgres:\/\/postgres(:[^@]+)?@postgres:5432\/flashsale$/);
      // A secret must come from the operator, never a literal in the file.
      expect(env['JWT_SECRET']).toMatch(/^\$\{JWT_SECRET:\?.+\}$/);
      expect(env['NODE_ENV']).toBe('production');
      for (const key of Object.keys(env)) expect([...CONTRACT_VARIABLES, ...EXTRA_VARIABLES]).toContain(key);
    }
    for (const name of ['api', 'worker']) {
      const env = environment(name);
      expect(env['HOST']).toBe('0.0.0.0');
      expect(env['METRICS_PORT']).toMatch(/^\d+$/);
    }
    expect(environment('api')['PORT']).toBe('3000');
  });

  it('when the api runs, then it says how many API processes share its port; the worker role has none', () => {
    expect(environment('api')['API_PROCESSES']).toMatch(/^(\$\{API_PROCESSES:-(auto|[1-9]\d*)\}|auto|[1-9]\d*)$/);
    expect(environment('worker')['API_PROCESSES']).toBeUndefined();
  });

  it('when api and worker run side by side, then their metrics ports differ', () => {
    expect(environment('api')['METRICS_PORT']).not.toBe(environment('worker')['METRICS_PORT']);
  });

  it('when the api runs, then it publishes port 3000 and is healthy only when ready', () => {
    expect(service('api')['ports']).toContain('3000:3000');
    expect(healthcheckText('api')).toMatch(/\/health\/ready/);
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  // Stages in order, each the text from its FROM line to the next.
  const stages = dockerfile.split(/^(?=FROM\s)/m).filter((part) => part.startsWith('FROM'));
  const runtime = stages.at(-1) ?? '';
  const build = stages.find((stage) => /^RUN npm run build\s*$/m.test(stage)) ?? '';

  it('when built, then a build stage with the dev dependencies compiles the TypeScript', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(build).toMatch(/^FROM node:20(-slim)?(@sha256:[0-9a-f]+)? AS (\S+)\s*$/m);
    expect(build).toMatch(/^RUN npm ci(?!.*--omit=dev)/m);
    expect(build).toMatch(/^COPY .*tsconfig\.build\.json/m);
  });

  it('when run, then the last stage is Node 20 in production mode with production dependencies only', () => {
    expect(runtime).toMatch(/^FROM node:20(-slim)?(@sha256:[0-9a-f]+)?\s*$/m);
    expect(runtime).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(runtime).toMatch(/^ENV NODE_ENV=production\s*$/m);
    // dist/ carries source maps: stack traces in production name the TypeScript lines.
    expect(runtime).toMatch(/^ENV NODE_OPTIONS=--enable-source-maps\s*$/m);
  });

  it('when run, then it holds the compiled code beside lua/ and migrations/, and no TypeScript', () => {
    const stageName = /^FROM \S+ AS (\S+)/m.exec(build)?.[1];
    expect(runtime).toMatch(new RegExp(`^COPY --from=${stageName} /app/dist \\./dist\\s*$`, 'm'));
    expect(runtime).toMatch(/^COPY lua \.\/lua\s*$/m);
    expect(runtime).toMatch(/^COPY migrations \.\/migrations\s*$/m);
    expect(runtime).not.toMatch(/^COPY (src|tsconfig)/m);
    expect(runtime).toMatch(/^CMD \["node", "dist\/main\.js", "all"\]\s*$/m);
    expect(repoFileExists(sourceOf('dist/main.js'))).toBe(true);
  });

  it('when installed for production, then no dependency compiles TypeScript at start-up', () => {
    const manifest = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    for (const compiler of ['tsx', 'typescript', 'ts-node', 'esbuild']) expect(Object.keys(manifest.dependencies)).not.toContain(compiler);
  });

  it('when run, then the process is not root', () => {
    const user = /^USER\s+(\S+)\s*$/m.exec(runtime)?.[1];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
  });
});

describe('.dockerignore', () => {
  it('when building, then local state and dependencies stay out of the context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    // dist too: the build stage compiles from source, never from a developer's stale output.
    for (const entry of ['node_modules', '.git', '.data', 'reports', 'dist']) expect(ignored).toContain(entry);
  });
});
