// Turning a script's raw reply into its typed outcome: the script's own success codes through
// the binding's parsers, its refusals through the one table (refusals.ts); anything else throws
// UnexpectedScriptReply.
import { refusalOf, type ScriptName } from './refusals.ts';
import { UnexpectedScriptReply } from './unexpected-reply.ts';

/** Parses the values after a success code; undefined when they are malformed. */
export type SuccessParsers<R> = { readonly [code: string]: (values: readonly unknown[]) => R | undefined };

/**
 * `{code, ...values}` replies: a success through `parsers`, else a refusal `script` may give.
 * R is the binding's reply union, whose refusal part is Refusal<script>.
 */
export function parseReply<R extends { readonly code: string }>(script: ScriptName, reply: unknown, parsers: SuccessParsers<R>): R {
  if (!Array.isArray(reply) || typeof reply[0] !== 'string') throw new UnexpectedScriptReply(script, reply);
  const [code, ...values] = reply as [string, ...unknown[]];
  const parse = Object.hasOwn(parsers, code) ? parsers[code] : undefined;
  if (parse) {
    const parsed = parse(values);
    if (parsed === undefined) throw new UnexpectedScriptReply(script, reply);
    return parsed;
  }
  const refusal = refusalOf(script, code);
  if (refusal === undefined) throw new UnexpectedScriptReply(script, reply);
  const [detail] = values;
  return (typeof detail === 'number' ? { code: refusal, detail } : { code: refusal }) as R;
}

/** A Lua integer reply, or undefined. */
export function integer(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) ? value : undefined;
}

/** A Lua 0/1 flag, or undefined. */
export function flag(value: unknown): boolean | undefined {
  return value === 1 ? true : value === 0 ? false : undefined;
}
