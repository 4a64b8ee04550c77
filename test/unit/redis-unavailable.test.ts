// Which errors are Redis being out of reach (answered 503 REDIS_UNAVAILABLE) rather than a bug
// (500): ioredis's own error classes and messages and the replies of a server that cannot serve.
import { createRequire } from 'node:module';
import { ReplyError } from 'ioredis';
import { MaxRetriesPerRequestError } from 'ioredis/built/errors/index.js';
import { describe, expect, it } from 'vitest';
import { isRedisUnavailable, roundFailureLevel } from '../../src/redis/connection.ts';

// ioredis does not re-export it; its CommonJS default export is the class.
const { default: ClusterAllFailedError } = createRequire(import.meta.url)('ioredis/built/errors/ClusterAllFailedError.js') as {
  default: new (message: string, lastNodeError: Error) => Error;
};

describe('isRedisUnavailable', () => {
  it('when Redis is out of reach or failing over, then it says so', () => {
    const errors: Error[] = [
      new Error('Connection is closed.'),
      new MaxRetriesPerRequestError(2),
      new ClusterAllFailedError('Failed to refresh slots cache.', new Error('connect ECONNREFUSED')),
      new Error('Too many Cluster redirections. Last error: Error: Connection is closed.'),
      new Error('Command timed out'),
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      new Error("Cluster isn't ready and enableOfflineQueue options is false"),
      new ReplyError('CLUSTERDOWN The cluster is down'),
      new ReplyError('TRYAGAIN Multiple keys request during rehashing of slot'),
      new ReplyError("READONLY You can't write against a read only replica."),
      new ReplyError('LOADING Redis is loading the dataset in memory'),
      new ReplyError('MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to no'),
      // Left to us by a pipeline with a write in it (reserve + WAIT), still failing once retried.
      new ReplyError('MOVED 7203 127.0.0.1:37685'),
      new ReplyError('ASK 7203 127.0.0.1:37685'),
      new Error('Command aborted due to connection close'),
      // An auto-pipeline across slots re-sent after a MOVED, once its slots sit on different masters.
      new Error('All keys in the pipeline should belong to the same slots allocation group'),
    ];
    expect(errors.filter((error) => !isRedisUnavailable(error)).map((error) => error.message)).toEqual([]);
  });

  it('when the error is a bug or a refusal on its merits, then it does not', () => {
    const errors: unknown[] = [
      new Error('boom'),
      new TypeError("Cannot read properties of undefined (reading 'id')"),
      new ReplyError('ERR Error running script: attempt to compare nil with number'),
      new ReplyError('NOSCRIPT No matching script'),
      new ReplyError('OOM command not allowed when used memory > maxmemory'),
      new Error('the cluster said CLUSTERDOWN in the middle'),
      'Connection is closed.',
      undefined,
    ];
    expect(errors.filter((error) => isRedisUnavailable(error))).toEqual([]);
  });
});

describe('roundFailureLevel', () => {
  it('when a background round met a failover or reshard, then it warns; otherwise it is an error', () => {
    expect(roundFailureLevel(new ReplyError('MOVED 7203 127.0.0.1:37685'))).toBe('warn');
    expect(roundFailureLevel(new Error('Connection is closed.'))).toBe('warn');
    expect(roundFailureLevel(new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBe('error');
    expect(roundFailureLevel(new Error('boom'))).toBe('error');
  });
});
