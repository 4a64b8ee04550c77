// The one reader of process.env: every setting validated once (env-schema + TypeBox), typed, frozen.
// A bad or missing value stops start-up with one message that names every offending variable.
import { availableParallelism } from 'node:os';
import envSchema from 'env-schema';
import { Type, type Static } from 'typebox';

const EnvSchema = Type.Object({
  NODE_ENV: Type.Union([Type.Literal('development'), Type.Literal('production'), Type.Literal('test')], {
    default: 'development',
  }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  METRICS_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 9464 }),
  // How many processes serve the API (roles api and all): a number, or `auto` for one per core.
  API_PROCESSES: Type.String({ pattern: '^(auto|[1-9][0-9]{0,2})$', default: 'auto' }),
  REDIS_URL: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379' }),
  REDIS_CLUSTER_NODES: Type.Optional(Type.String({ pattern: '^[^,:\\s]+:\\d+(,[^,:\\s]+:\\d+)*$' })),
  // Namespace of every Redis key and BullMQ queue, so several deployments (or test files) share a Redis.
  REDIS_PREFIX: Type.String({ pattern: '^[A-Za-z0-9_-]{1,32}$', default: 'fs' }),
  // async: a 201 once the master ran the reserve; replica: once REDIS_WAIT_REPLICAS replicas have it too.
  REDIS_DURABILITY: Type.Union([Type.Literal('async'), Type.Literal('replica')], { default: 'async' }),
  REDIS_WAIT_REPLICAS: Type.Integer({ minimum: 1, maximum: 16, default: 1 }),
  REDIS_WAIT_TIMEOUT_MS: Type.Integer({ minimum: 1, maximum: 10_000, default: 100 }),
  DATABASE_URL: Type.String({
    pattern: '^postgres(ql)?://',
    default: 'postgres://postgres@127.0.0.1:5432/flashsale',
  }),
  JWT_SECRET: Type.Optional(Type.String({ minLength: 16 })),
  RATE_LIMIT_USER_PER_SEC: Type.Integer({ minimum: 0, default: 10 }),
  RATE_LIMIT_IP_PER_SEC: Type.Integer({ minimum: 0, default: 0 }),
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1 })),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info' },
  ),
  // How long a graceful shutdown may take before the process exits anyway.
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 10_000 }),
  // Event-loop delay above which the API sheds requests with 503 OVERLOADED (0 = never).
  SHED_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, default: 1_000 }),
  // A persist job whose worker died is retried after this long (BullMQ lock duration); also the
  // persister's claim idle time: outbox entries read by a persister that was killed wait this long
  // before another persister claims them.
  QUEUE_LOCK_DURATION_MS: Type.Integer({ minimum: 1_000, default: 30_000 }),
  // Persistence partitions: a shard's outbox and refused batches belong to partition tag % this,
  // each with its own BullMQ queue and lease. Fixed per deployment: changing it moves shards
  // between partitions (safe, as entries are persisted exactly once, but drain first).
  PERSIST_PARTITIONS: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
});

type Env = Static<typeof EnvSchema>;

export type Role = 'api' | 'worker' | 'all';

/**
 * When an accepted order is answered 201: `async` as soon as its master ran the script (a failover
 * may lose the last acknowledged orders); `replica` once `replicas` replicas acknowledged it (Redis
 * WAIT, at most `timeoutMs`), else 503 NOT_DURABLE.
 */
export type Durability = { readonly mode: 'async' } | { readonly mode: 'replica'; readonly replicas: number; readonly timeoutMs: number };

export interface Config {
  readonly env: Env['NODE_ENV'];
  readonly http: { readonly host: string; readonly port: number };
  readonly metrics: { readonly host: string; readonly port: number };
  /** API processes for the api and all roles; 1 means no cluster, one process as before. */
  readonly apiProcesses: number;
  readonly redis: {
    readonly url: string;
    readonly clusterNodes: readonly { readonly host: string; readonly port: number }[] | undefined;
    readonly prefix: string;
    readonly durability: Durability;
  };
  readonly databaseUrl: string;
  readonly jwtSecret: string;
  readonly rateLimit: { readonly userPerSecond: number; readonly ipPerSecond: number };
  readonly trustProxy: string | undefined;
  readonly logLevel: string;
  readonly shutdownTimeoutMs: number;
  readonly queueLockDurationMs: number;
  readonly persistPartitions: number;
  readonly shedEventLoopDelayMs: number;
}

// Development gets a fixed secret so `npm start` works out of the box; nowhere else.
const DEVELOPMENT_JWT_SECRET = 'development-only-secret-do-not-use';

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

interface AjvIssue {
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
}

// A failed union reports every branch: keep one message per variable.
function describe(issues: readonly AjvIssue[]): string[] {
  const byVariable = new Map<string, string>();
  for (const issue of issues) {
    const variable = issue.instancePath.replace(/^\//, '') || String(issue.params.missingProperty ?? 'environment');
    const text = issue.params.allowedValue !== undefined ? 'must be one of the allowed values' : issue.message;
    if (!byVariable.has(variable)) byVariable.set(variable, `${variable} ${text ?? 'is invalid'}`);
  }
  return [...byVariable.values()];
}

export function loadConfig(source: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  let env: Env | undefined;
  try {
    // An empty variable (`TRUST_PROXY=` in an env file) means "not set".
    const given = Object.fromEntries(Object.entries(source).filter(([, value]) => value !== undefined && value !== ''));
    env = envSchema<Env>({ schema: EnvSchema, data: given, env: false });
  } catch (error) {
    const issues = (error as { errors?: AjvIssue[] }).errors ?? [];
    problems.push(...(issues.length > 0 ? describe(issues) : [(error as Error).message]));
  }
  const nodeEnv = env?.NODE_ENV ?? source.NODE_ENV ?? 'development';
  const jwtSecret = env?.JWT_SECRET ?? (nodeEnv === 'development' ? DEVELOPMENT_JWT_SECRET : undefined);
  if (jwtSecret === undefined && !problems.some((p) => p.startsWith('JWT_SECRET'))) {
    problems.push('JWT_SECRET is required outside development');
  }
  if (env === undefined || jwtSecret === undefined || problems.length > 0) throw new ConfigError(problems);

  const config: Config = {
    env: env.NODE_ENV,
    http: { host: env.HOST, port: env.PORT },
    metrics: { host: env.HOST, port: env.METRICS_PORT },
    apiProcesses: env.API_PROCESSES === 'auto' ? availableParallelism() : Number(env.API_PROCESSES),
    redis: {
      url: env.REDIS_URL,
      clusterNodes: env.REDIS_CLUSTER_NODES?.split(',').map((seed) => {
        const [host = '', port = '0'] = seed.split(':');
        return { host, port: Number(port) };
      }),
      prefix: env.REDIS_PREFIX,
      durability:
        env.REDIS_DURABILITY === 'replica'
          ? { mode: 'replica', replicas: env.REDIS_WAIT_REPLICAS, timeoutMs: env.REDIS_WAIT_TIMEOUT_MS }
          : { mode: 'async' },
    },
    databaseUrl: env.DATABASE_URL,
    jwtSecret,
    rateLimit: { userPerSecond: env.RATE_LIMIT_USER_PER_SEC, ipPerSecond: env.RATE_LIMIT_IP_PER_SEC },
    trustProxy: env.TRUST_PROXY,
    logLevel: env.LOG_LEVEL,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    queueLockDurationMs: env.QUEUE_LOCK_DURATION_MS,
    persistPartitions: env.PERSIST_PARTITIONS,
    shedEventLoopDelayMs: env.SHED_EVENT_LOOP_DELAY_MS,
  };
  return deepFreeze(config);
}

function deepFreeze<T extends object>(value: T): T {
  for (const inner of Object.values(value)) {
    if (inner !== null && typeof inner === 'object') deepFreeze(inner as object);
  }
  return Object.freeze(value);
}

/** For entry points: the config, or one line on stderr naming every bad variable and exit code 1. */
export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
}
