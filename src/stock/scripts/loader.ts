// Reads lua/*.lua and joins their shared code in, the way BullMQ does: a line
// `--- @include "includes/name"` is replaced by that file (relative to the including file,
// `.lua` optional), each include at most once per script. A missing include or a cycle is an
// error at load time, never a broken script in Redis.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const LUA_DIR = fileURLToPath(new URL('../../../lua/', import.meta.url));

export interface ScriptFile {
  /** The script's name, from its file name: reserveOrder-9.lua → reserveOrder. */
  readonly name: string;
  readonly file: string;
  /** From the file name: reserveOrder-9.lua has 9 keys; undefined: the caller passes the count first. */
  readonly numberOfKeys: number | undefined;
  /** The source with every include joined in: what Redis runs. */
  readonly lua: string;
}

const INCLUDE = /^---[ \t]*@include[ \t]+"([^"]+)"[ \t]*$/gm;

export class ScriptLoadError extends Error {
  override readonly name = 'ScriptLoadError';
}

function resolveInclude(from: string, target: string): string {
  const file = path.resolve(path.dirname(from), target);
  return file.endsWith('.lua') ? file : `${file}.lua`;
}

/** The file's source with its includes (and theirs) joined in; `joined` holds files already in. */
function expand(file: string, stack: readonly string[], joined: Set<string>): string {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch {
    const by = stack.at(-1);
    throw new ScriptLoadError(by ? `${path.basename(by)} includes ${file}, which cannot be read` : `cannot read ${file}`);
  }
  return source.replace(INCLUDE, (_line, target: string) => {
    const included = resolveInclude(file, target);
    if (stack.includes(included) || included === file) {
      const cycle = [...stack, file, included].map((f) => path.basename(f)).join(' → ');
      throw new ScriptLoadError(`include cycle: ${cycle}`);
    }
    // Already joined earlier in this script: its functions are in scope; joining twice would
    // only shadow them.
    if (joined.has(included)) return `-- (${target} already included above)`;
    joined.add(included);
    return expand(included, [...stack, file], joined).trimEnd();
  });
}

/** One script file, read with its includes joined in. */
export function loadScript(file: string): ScriptFile {
  const match = /^([A-Za-z]+)(?:-(\d+))?\.lua$/.exec(path.basename(file));
  if (!match?.[1]) throw new ScriptLoadError(`Lua file ${path.basename(file)} must be named name-KEYCOUNT.lua or name.lua`);
  return {
    name: match[1],
    file: path.basename(file),
    numberOfKeys: match[2] === undefined ? undefined : Number(match[2]),
    lua: expand(path.resolve(file), [], new Set()),
  };
}

/** Every script in `dir` (not its subfolders, which hold includes), sorted by file name. */
export function readScripts(dir: string = LUA_DIR): ScriptFile[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.lua'))
    .map((entry) => entry.name)
    .sort()
    .map((file) => loadScript(path.join(dir, file)));
}
