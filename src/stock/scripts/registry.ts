// The scripts as ioredis commands: lua/*.lua is read once per process (includes joined) and
// registered on each client with defineCommand (EVALSHA with the NOSCRIPT fallback), typed below
// by augmenting ioredis's RedisCommander, which Redis and Cluster clients both implement. The
// bindings (one module per script beside this one) are the only callers of these commands.
import { createHash } from 'node:crypto';
import { Cluster, type Redis, type Result } from 'ioredis';
import type { RedisClient } from '../../redis/connection.ts';
import { readScripts } from './loader.ts';
import { SCRIPT_NAMES } from './refusals.ts';

type Key = string;

// Raw replies are `unknown` on purpose: each binding parses its own into a typed outcome.
declare module 'ioredis' {
  interface RedisCommander<Context> {
    reserveOrder(
      sale: Key, item: Key, users: Key, idempotency: Key, order: Key, outbox: Key, deadlines: Key, attempts: Key,
      saleId: string, sku: string, orderId: string, userId: string, quantity: number, nowMs: number,
      idempotencyKey: string, idempotencyTtlSeconds: number, orderRetentionMs: number, attemptsPerSecond: number, shard: number,
    ): Result<unknown, Context>;
    payOrder(order: Key, item: Key, users: Key, outbox: Key, deadlines: Key, userId: string, paymentRef: string, nowMs: number, outage: 0 | 1): Result<unknown, Context>;
    releaseOrder(order: Key, item: Key, users: Key, outbox: Key, deadlines: Key, userId: string, nowMs: number, outage: 0 | 1): Result<unknown, Context>;
    /** Variable keys: the key count first, then the shard's outbox, deadlines, item and users, the orders' keys; then nowMs, sku, shard, the order ids. */
    expireDue(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Result<unknown, Context>;
    loadSale(anchor: Key, saleJson: string, shardsJson: string): Result<unknown, Context>;
    loadShard(sale: Key, item: Key, saleJson: string, nowMs: number, itemJson: string): Result<unknown, Context>;
    closeSale(sale: Key, closedAtMs: number): Result<unknown, Context>;
    delistItem(item: Key, nowMs: number, reason: 'operator' | 'low_stock'): Result<unknown, Context>;
    relistItem(item: Key, reason: 'operator' | 'low_stock'): Result<unknown, Context>;
    restockItem(item: Key, quantity: number): Result<unknown, Context>;
    ackOutbox(outbox: Key, group: string, ...entryIds: string[]): Result<unknown, Context>;
    transferOut(item: Key, transfersOut: Key, transfersSent: Key, transferId: string, to: number, want: number, min: number, nowMs: number): Result<unknown, Context>;
    transferIn(item: Key, transfersIn: Key, transferId: string, quantity: number): Result<unknown, Context>;
    transferDone(item: Key, transfersOut: Key, transfersSent: Key, transferId: string): Result<unknown, Context>;
  }
}

const SCRIPTS = readScripts();
const SCRIPT_SHAS = SCRIPTS.map((script) => createHash('sha1').update(script.lua).digest('hex'));

// The typed commands above and the files must name the same scripts.
{
  const files = SCRIPTS.map((script) => script.name).sort();
  const typed = [...SCRIPT_NAMES].sort();
  if (JSON.stringify(files) !== JSON.stringify(typed)) throw new Error(`lua/ holds ${files.join(', ')}; the bindings expect ${typed.join(', ')}`);
}

/** What every binding needs: a client with the scripts defined, and the namespace of its keys. */
export interface Scripts {
  readonly client: RedisClient;
  readonly prefix: string;
}

/** Defines the scripts on `client` (once per client) and returns what the bindings take. */
export function defineScripts(client: RedisClient, prefix: string): Scripts {
  for (const script of SCRIPTS) {
    if (!(script.name in client)) client.defineCommand(script.name, { lua: script.lua, numberOfKeys: script.numberOfKeys });
  }
  return { client, prefix };
}

/** The source Redis runs for a script (its SHA1 is what EVALSHA sends). */
export function scriptSource(name: (typeof SCRIPT_NAMES)[number]): string {
  const script = SCRIPTS.find((s) => s.name === name);
  if (!script) throw new Error(`no Lua script named ${name}`);
  return script.lua;
}

/**
 * Loads every script into Redis's script cache (again, after a SCRIPT FLUSH or a Redis restart),
 * so no order pays for a NOSCRIPT retry; true when all are there (readiness).
 */
export async function ensureScriptsLoaded(client: RedisClient): Promise<boolean> {
  // On a cluster every master keeps its own script cache.
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  const loaded = await Promise.all(nodes.map((node) => ensureLoadedOn(node)));
  return loaded.every(Boolean);
}

async function ensureLoadedOn(node: Redis): Promise<boolean> {
  const cached = (await node.script('EXISTS', ...SCRIPT_SHAS)) as number[];
  if (cached.every((flag) => flag === 1)) return true;
  await Promise.all(SCRIPTS.map((s) => node.script('LOAD', s.lua)));
  const exists = (await node.script('EXISTS', ...SCRIPT_SHAS)) as number[];
  return exists.every((flag) => flag === 1);
}
