// ackOutbox-1.lua: the persister's acknowledgement of a batch safely in Postgres: its entries leave
// the consumer group's pending list and the stream together.
import type { Scripts } from './registry.ts';
import { integer } from './reply.ts';
import { UnexpectedScriptReply } from './unexpected-reply.ts';

export interface AckOutboxKeys {
  /** The stream's key (a shard's outbox: shardKeys(...).outbox); the persister knows it already. */
  readonly outbox: string;
}

export interface AckOutboxArgs {
  readonly group: string;
  readonly entryIds: readonly string[];
}

/** How many entries were acknowledged and deleted. */
export async function ackOutbox(scripts: Scripts, keys: AckOutboxKeys, args: AckOutboxArgs): Promise<number> {
  const reply = await scripts.client.ackOutbox(keys.outbox, args.group, ...args.entryIds);
  const deleted = integer(reply);
  if (deleted === undefined) throw new UnexpectedScriptReply('ackOutbox', reply);
  return deleted;
}
