// Every Lua script keeps its contract readable and tested: its header documents every KEYS and
// ARGV it reads and every code it returns, its file name carries its real key count, and it has
// an integration test file of its own that names each of its return codes. Checked on the text
// Redis runs: the script with its includes joined in.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readScripts } from '../../src/stock/scripts/loader.ts';

const TEST_DIR = fileURLToPath(new URL('../integration/lua/', import.meta.url));

const scripts = readScripts();
const luaFiles = scripts.map((script) => script.file);
const joined = (file: string): string => scripts.find((script) => script.file === file)?.lua ?? '';

/** `reserveOrder-8.lua` → { name: 'reserveOrder', keyCount: 8 }; `loadSale.lua` → keyCount undefined. */
function parseFileName(file: string): { name: string; keyCount: number | undefined } | undefined {
  const match = /^([A-Za-z]+)(?:-(\d+))?\.lua$/.exec(file);
  if (!match?.[1]) return undefined;
  return { name: match[1], keyCount: match[2] === undefined ? undefined : Number(match[2]) };
}

/** The opening `--[[ … ]]` block, and the code after it with its comments removed. */
function splitHeader(source: string): { header: string; body: string } | undefined {
  const match = /^\s*--\[(=*)\[([\s\S]*?)\]\1\]/.exec(source);
  if (!match) return undefined;
  const body = source
    .slice(match[0].length)
    .replace(/--\[(=*)\[[\s\S]*?\]\1\]/g, '')
    .replace(/--.*$/gm, '');
  return { header: match[2] ?? '', body };
}

interface Indexes {
  /** Literal indexes: `KEYS[3]`. */
  readonly literal: Set<number>;
  /** Whether an index is computed (`KEYS[i]`, `ARGV[i + 1]`) or the table's length is read. */
  readonly variable: boolean;
}

function usedIndexes(body: string, table: 'KEYS' | 'ARGV'): Indexes {
  const literal = new Set<number>();
  let variable = new RegExp(`#${table}\\b`).test(body);
  for (const match of body.matchAll(new RegExp(`\\b${table}\\[([^\\]]*)\\]`, 'g'))) {
    const index = (match[1] ?? '').trim();
    if (/^\d+$/.test(index)) literal.add(Number(index));
    else variable = true;
  }
  return { literal, variable };
}

interface Documented {
  readonly single: Set<number>;
  /** `KEYS[2..n]`, `ARGV[3..n]`: from, and to (undefined for n). */
  readonly ranges: { from: number; to: number | undefined }[];
}

function documentedIndexes(header: string, table: 'KEYS' | 'ARGV'): Documented {
  const single = new Set<number>();
  const ranges: { from: number; to: number | undefined }[] = [];
  // An entry is the name followed by a description, e.g. "KEYS[1] sale hash", "ARGV[3..n] one item".
  for (const match of header.matchAll(new RegExp(`\\b${table}\\[(\\d+)(?:\\.\\.(\\d+|n))?\\][ \\t]+\\S`, 'g'))) {
    const from = Number(match[1]);
    if (match[2] === undefined) single.add(from);
    else ranges.push({ from, to: match[2] === 'n' ? undefined : Number(match[2]) });
  }
  return { single, ranges };
}

function isDocumented(doc: Documented, index: number): boolean {
  return doc.single.has(index) || doc.ranges.some(({ from, to }) => index >= from && (to === undefined || index <= to));
}

/** Codes the script can return: the first element of every returned table literal. */
function returnCodes(body: string): Set<string> {
  return new Set([...body.matchAll(/\breturn\s*\{\s*'([A-Z_]+)'/g)].map((match) => match[1] ?? ''));
}

/** Everything wrong with one script's contract; empty when it is sound. */
function contractProblems(file: string, source: string): string[] {
  const parsed = parseFileName(file);
  if (!parsed) return [`${file}: must be named name-KEYCOUNT.lua or name.lua`];
  const split = splitHeader(source);
  if (!split) return [`${file}: must open with a --[[ … ]] header comment`];
  const { header, body } = split;
  const problems: string[] = [];

  const keys = usedIndexes(body, 'KEYS');
  const keyDocs = documentedIndexes(header, 'KEYS');
  if (parsed.keyCount !== undefined) {
    const highest = Math.max(0, ...keys.literal);
    if (keys.variable) problems.push(`${file}: a fixed key count, yet the body computes a KEYS index or reads #KEYS`);
    if (highest !== parsed.keyCount) problems.push(`${file}: the name says ${parsed.keyCount} keys, the body's highest is KEYS[${highest}]`);
    for (let i = 1; i <= parsed.keyCount; i++) {
      if (!keyDocs.single.has(i)) problems.push(`${file}: the header does not document KEYS[${i}]`);
    }
    const beyond = [...keyDocs.single].filter((i) => i > parsed.keyCount!);
    if (beyond.length > 0 || keyDocs.ranges.length > 0) problems.push(`${file}: the header documents keys beyond KEYS[${parsed.keyCount}]`);
  } else {
    if (!keys.variable) problems.push(`${file}: no key count in the name, yet the body never reads a variable KEYS index or #KEYS`);
    if (keyDocs.ranges.length === 0) problems.push(`${file}: the header does not document its variable keys (e.g. KEYS[2..n])`);
    for (const i of keys.literal) {
      if (!isDocumented(keyDocs, i)) problems.push(`${file}: the header does not document KEYS[${i}]`);
    }
  }

  const argv = usedIndexes(body, 'ARGV');
  const argvDocs = documentedIndexes(header, 'ARGV');
  for (const i of argv.literal) {
    if (!isDocumented(argvDocs, i)) problems.push(`${file}: the header does not document ARGV[${i}]`);
  }
  if (argv.variable && argvDocs.ranges.length === 0) problems.push(`${file}: the body computes an ARGV index, the header documents no ARGV[a..n] range`);
  for (const i of argvDocs.single) {
    if (!argv.literal.has(i)) problems.push(`${file}: the header documents ARGV[${i}], the body never reads it`);
  }

  if (!/\bReturns\b/.test(header)) problems.push(`${file}: the header does not say what it returns`);
  for (const code of returnCodes(body)) {
    if (!header.includes(`'${code}'`)) problems.push(`${file}: returns '${code}', the header does not document it`);
  }
  return problems;
}

describe('the Lua scripts', () => {
  it('when the lua directory is read, then it holds the scripts the service needs', () => {
    const names = luaFiles.map((file) => parseFileName(file)?.name);
    for (const name of ['reserveOrder', 'loadSale', 'closeSale', 'delistItem', 'relistItem', 'restockItem']) {
      expect(names).toContain(name);
    }
    expect(new Set(names).size).toBe(names.length);
  });

  it('when the scripts are read, then every include is joined in: no directive is left and each include file is used', () => {
    const includeDir = fileURLToPath(new URL('../../lua/includes/', import.meta.url));
    const includes = readdirSync(includeDir).filter((file) => file.endsWith('.lua'));
    expect(includes.length).toBeGreaterThan(0);
    for (const script of scripts) expect(script.lua, script.file).not.toMatch(/@include/);
    for (const include of includes) {
      const source = readFileSync(path.join(includeDir, include), 'utf8');
      const users = scripts.filter((script) => script.lua.includes(source.trimEnd()));
      expect(users.length, `${include} is joined into no script`).toBeGreaterThan(0);
    }
  });

  it.each(luaFiles)('when %s is read, then its header documents every key, argument and return code its body uses', (file) => {
    expect(contractProblems(file, joined(file))).toEqual([]);
  });

  it.each(luaFiles)('when %s is read, then it has an integration test file naming each of its return codes', (file) => {
    const name = parseFileName(file)?.name ?? file;
    const testFile = path.join(TEST_DIR, `${name}.test.ts`);
    expect(existsSync(testFile), `${path.relative(process.cwd(), testFile)} is missing`).toBe(true);
    const test = readFileSync(testFile, 'utf8');
    const split = splitHeader(joined(file));
    const untested = [...returnCodes(split?.body ?? '')].filter((code) => code !== 'OK' && !test.includes(`'${code}'`));
    expect(untested).toEqual([]);
  });

  it('when the integration tests of the scripts are listed, then each one is named after a script', () => {
    const scripts = new Set(luaFiles.map((file) => parseFileName(file)?.name));
    const orphans = readdirSync(TEST_DIR)
      .filter((file) => file.endsWith('.test.ts'))
      .map((file) => file.replace(/\.test\.ts$/, ''))
      .filter((name) => !scripts.has(name));
    expect(orphans).toEqual([]);
  });
});

describe('the contract check itself', () => {
  const header = (lines: string) => `--[[\n  x: test script.\n${lines}\n  Returns {'OK'} or {'NOPE'}.\n]]\n`;

  it('when a script is sound, then no problem is reported', () => {
    const source = `${header("  KEYS[1] a\n  KEYS[2] b\n  ARGV[1] now")}if redis.call('GET', KEYS[2]) then return {'NOPE'} end\nredis.call('SET', KEYS[1], ARGV[1])\nreturn {'OK'}\n`;
    expect(contractProblems('x-2.lua', source)).toEqual([]);
  });

  it('when the name under-counts the keys the body uses, then the mismatch is reported', () => {
    const source = `${header('  KEYS[1] a')}redis.call('SET', KEYS[2], 1)\nreturn {'OK'}\n`;
    expect(contractProblems('x-1.lua', source)).toContain('x-1.lua: the name says 1 keys, the body\'s highest is KEYS[2]');
  });

  it('when a key or argument is used but not documented, or documented but not used, then each is reported', () => {
    const source = `${header('  KEYS[1] a\n  ARGV[2] stale')}redis.call('SET', KEYS[1], ARGV[1])\nreturn {'OK'}\n`;
    expect(contractProblems('x-2.lua', source)).toEqual([
      "x-2.lua: the name says 2 keys, the body's highest is KEYS[1]",
      'x-2.lua: the header does not document KEYS[2]',
      'x-2.lua: the header does not document ARGV[1]',
      'x-2.lua: the header documents ARGV[2], the body never reads it',
    ]);
  });

  it('when a code is returned but not documented, then it is reported, and comments in the body do not count as use', () => {
    const source = `${header('  KEYS[1] a')}-- KEYS[9] is only mentioned here\nif true then return {'SURPRISE'} end\nreturn {'OK', KEYS[1]}\n`;
    expect(contractProblems('x-1.lua', source)).toEqual(["x-1.lua: returns 'SURPRISE', the header does not document it"]);
  });

  it('when a variable-key script does not document its key range, then it is reported', () => {
    const source = `${header('  KEYS[1] a\n  ARGV[1] n')}for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end\nreturn {'OK', ARGV[1]}\n`;
    expect(contractProblems('x.lua', source)).toEqual(['x.lua: the header does not document its variable keys (e.g. KEYS[2..n])']);
    const documented = source.replace('  KEYS[1] a', '  KEYS[1] a\n  KEYS[2..n] the rest');
    expect(contractProblems('x.lua', documented)).toEqual([]);
  });

  it('when a script has no header, then it is reported', () => {
    expect(contractProblems('x-1.lua', "return {'OK', KEYS[1]}\n")).toEqual(['x-1.lua: must open with a --[[ … ]] header comment']);
  });
});
