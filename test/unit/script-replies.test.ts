// Script replies become typed outcomes in one place: a script's success codes through its
// binding's parsers, its refusals through the one table, and anything else is a loud error.
import { describe, expect, it } from 'vitest';
import { REFUSALS, refusalOf } from '../../src/stock/scripts/refusals.ts';
import { parseReply } from '../../src/stock/scripts/reply.ts';
import { UnexpectedScriptReply } from '../../src/stock/scripts/unexpected-reply.ts';

type Reply = { readonly code: 'OK'; readonly n: number } | { readonly code: 'SOLD_OUT' } | { readonly code: 'INSUFFICIENT_STOCK'; readonly detail?: number };
const parsers = { OK: ([n]: readonly unknown[]) => (typeof n === 'number' ? ({ code: 'OK', n } as const) : undefined) };

describe('parseReply', () => {
  it('when a success code comes with its values, then the binding parser shapes it', () => {
    expect(parseReply<Reply>('reserveOrder', ['OK', 3], parsers)).toEqual({ code: 'OK', n: 3 });
  });

  it('when a refusal of that script comes, then it is returned with its detail, if any', () => {
    expect(parseReply<Reply>('reserveOrder', ['SOLD_OUT'], parsers)).toEqual({ code: 'SOLD_OUT' });
    expect(parseReply<Reply>('reserveOrder', ['INSUFFICIENT_STOCK', 2], parsers)).toEqual({ code: 'INSUFFICIENT_STOCK', detail: 2 });
  });

  it('when a code belongs to another script, is unknown, or the reply is not a coded array, then UnexpectedScriptReply is thrown', () => {
    for (const reply of [['ORDER_NOT_FOUND'], ['NOPE'], 'OK', 1, null, [], [1]]) {
      expect(() => parseReply<Reply>('reserveOrder', reply, parsers), JSON.stringify(reply)).toThrow(UnexpectedScriptReply);
    }
  });

  it('when a success code comes with malformed values, then UnexpectedScriptReply is thrown', () => {
    expect(() => parseReply<Reply>('reserveOrder', ['OK', 'three'], parsers)).toThrow(/reserveOrder returned an unexpected reply: \["OK","three"\]/);
  });

  it('when a code names an Object.prototype member, then it is not taken for a parser', () => {
    expect(() => parseReply<Reply>('reserveOrder', ['toString'], parsers)).toThrow(UnexpectedScriptReply);
  });
});

describe('the refusal table', () => {
  it('when a script is asked about its own codes, then only those are refusals', () => {
    expect(refusalOf('payOrder', 'ORDER_EXPIRED')).toBe('ORDER_EXPIRED');
    expect(refusalOf('payOrder', 'SOLD_OUT')).toBeUndefined();
    expect(refusalOf('ackOutbox', 'ITEM_NOT_FOUND')).toBeUndefined();
  });

  it('when codes are listed, then no script lists one twice', () => {
    for (const [script, codes] of Object.entries(REFUSALS)) expect(new Set(codes).size, script).toBe(codes.length);
  });
});
