// Loads lua/*.lua once (includes joined) and registers each with ioredis's defineCommand (EVALSHA with the
// NOSCRIPT fallback). The key count comes from the file name: reserveOrder-8.lua has 8 keys;
// a name without a count takes a variable number of keys, given first at the call.
import { createHash } from 'node:crypto';
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../redis/connection.ts';
import { readScripts } from './scripts/loader.ts';

const SCRIPTS = readScripts();
const SCRIPT_SHAS = SCRIPTS.map((s) => createHash('sha1').update(s.lua).digest('hex'));

type ScriptCall = (...keysAndArgs: (string | number)[]) => Promise<unknown>;

/** The defined commands, by script name; the typed wrappers live with their callers. */
export type ScriptCommands = Record<string, ScriptCall>;

export function defineScripts(client: RedisClient): ScriptCommands {
  const commands: ScriptCommands = {};
  for (const script of SCRIPTS) {
    if (!(script.name in client)) {
      client.defineCommand(script.name, { lua: script.lua, numberOfKeys: script.numberOfKeys });
    }
    const method = (client as unknown as Record<string, ScriptCall>)[script.name];
    if (!method) throw new Error(`script ${script.name} was not defined`);
    commands[script.name] = method.bind(client);
  }
  return commands;
}

export function script(commands: ScriptCommands, name: string): ScriptCall {
  const command = commands[name];
  if (!command) throw new Error(`no Lua script named ${name}`);
  return command;
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
export { readScripts } from './scripts/loader.ts';
