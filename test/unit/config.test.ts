// Config validation: defaults, types, and one message naming every bad variable.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';

describe('loadConfig', () => {
  it('when nothing is set in development, then the documented defaults apply', () => {
    const config = loadConfig({});
    expect(config.http).toEqual({ host: '127.0.0.1', port: 3000 });
    expect(config.metrics.port).toBe(9464);
    expect(config.redis.url).toBe('redis://127.0.0.1:6379');
    expect(config.redis.clusterNodes).toBeUndefined();
    expect(config.databaseUrl).toBe('postgres://postgres@127.0.0.1:5432/flashsale');
    expect(config.rateLimit).toEqual({ userPerSecond: 10, ipPerSecond: 0 });
    expect(config.logLevel).toBe('info');
    expect(config.redis.durability).toEqual({ mode: 'async' });
  });

  it('when REDIS_DURABILITY is replica, then the WAIT settings are typed with their defaults, and a bad mode is refused', () => {
    expect(loadConfig({ REDIS_DURABILITY: 'replica' }).redis.durability).toEqual({ mode: 'replica', replicas: 1, timeoutMs: 100 });
    expect(loadConfig({ REDIS_DURABILITY: 'replica', REDIS_WAIT_REPLICAS: '2', REDIS_WAIT_TIMEOUT_MS: '250' }).redis.durability).toEqual({
      mode: 'replica',
      replicas: 2,
      timeoutMs: 250,
    });
    expect(() => loadConfig({ REDIS_DURABILITY: 'sync' })).toThrow(/REDIS_DURABILITY/);
    expect(() => loadConfig({ REDIS_DURABILITY: 'replica', REDIS_WAIT_REPLICAS: '0' })).toThrow(/REDIS_WAIT_REPLICAS/);
  });

  it('when values are given as strings, then they are typed', () => {
    const config = loadConfig({ PORT: '8080', RATE_LIMIT_USER_PER_SEC: '0', REDIS_CLUSTER_NODES: 'r1:7000,r2:7001' });
    expect(config.http.port).toBe(8080);
    expect(config.rateLimit.userPerSecond).toBe(0);
    expect(config.redis.clusterNodes).toEqual([{ host: 'r1', port: 7000 }, { host: 'r2', port: 7001 }]);
  });

  it('when several values are bad, then one error names every offending variable', () => {
    let error: unknown;
    try {
      loadConfig({ NODE_ENV: 'production', PORT: 'eighty', LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://x', RATE_LIMIT_IP_PER_SEC: '-1' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'RATE_LIMIT_IP_PER_SEC', 'JWT_SECRET']) {
      expect(problems).toContain(name);
    }
    expect((error as ConfigError).problems).toHaveLength(5);
  });

  it('when JWT_SECRET is missing outside development, then start-up is refused', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/JWT_SECRET is required/);
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'a-production-secret-123' }).jwtSecret).toBe('a-production-secret-123');
  });

  it('when API_PROCESSES is unset or auto, then the API runs one process per core; a number is taken as given', () => {
    expect(loadConfig({}).apiProcesses).toBe(availableParallelism());
    expect(loadConfig({ API_PROCESSES: 'auto' }).apiProcesses).toBe(availableParallelism());
    expect(loadConfig({ API_PROCESSES: '1' }).apiProcesses).toBe(1);
    expect(loadConfig({ API_PROCESSES: '12' }).apiProcesses).toBe(12);
  });

  it('when API_PROCESSES is not a positive whole number or auto, then start-up is refused naming it', () => {
    for (const value of ['0', '-2', '1.5', 'all', ' 2', '1000']) {
      expect(() => loadConfig({ API_PROCESSES: value }), value).toThrow(/API_PROCESSES/);
    }
  });

  it('when the config is loaded, then it cannot be changed', () => {
    const config = loadConfig({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.http)).toBe(true);
  });
});

describe('loadConfig with an env file', () => {
  it('when a variable is set but empty, then it counts as unset', () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: '', TRUST_PROXY: '', PORT: '' });
    expect(config.redis.clusterNodes).toBeUndefined();
    expect(config.trustProxy).toBeUndefined();
    expect(config.http.port).toBe(3000);
  });
});
