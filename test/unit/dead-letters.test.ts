// Which Postgres failures poison one entry (set aside as a dead letter) and which are transient
// (the batch is retried until Postgres is back): the persist worker's decision, as a pure rule.
import { describe, expect, it } from 'vitest';
import { isDataError } from '../../src/orders/dead-letters.ts';

const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code });

describe('isDataError', () => {
  it.each(['22021', '22001', '22003', '22P02', '22007', '23502', '23503', '23514'])('when Postgres answers SQLSTATE %s, then the entry is poison', (code) => {
    expect(isDataError(pgError(code))).toBe(true);
  });

  it.each(['08006', '08001', '57P01', '57P03', '53300', '40001', '40P01', 'ECONNREFUSED', 'ECONNRESET'])(
    'when the failure is %s, then it is transient',
    (code) => {
      expect(isDataError(pgError(code))).toBe(false);
    },
  );

  it('when the error has no code (a timeout, a dropped socket), then it is transient', () => {
    expect(isDataError(new Error('Connection terminated unexpectedly'))).toBe(false);
    expect(isDataError(undefined)).toBe(false);
    expect(isDataError({ code: 22021 })).toBe(false);
  });
});
