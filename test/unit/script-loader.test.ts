// The Lua loader joins shared code in at load time (BullMQ's `--- @include`): once per script
// however often it is asked for, relative to the including file, and it refuses a missing
// include or a cycle rather than handing Redis a broken script.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadScript, readScripts } from '../../src/stock/scripts/loader.ts';

let dir: string;

function tree(files: Record<string, string>): string {
  dir = mkdtempSync(path.join(tmpdir(), 'lua-loader-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the Lua loader', () => {
  it('when a script includes a file, then the directive is replaced by the file, with nested includes joined once', () => {
    tree({
      'top-1.lua': '-- top\n--- @include "includes/a"\n--- @include "includes/b.lua"\nreturn KEYS[1]\n',
      'includes/a.lua': '--- @include "b"\nlocal function a() return b() end\n',
      'includes/b.lua': 'local function b() return 1 end\n',
    });

    const [script] = readScripts(dir);

    expect(script).toMatchObject({ name: 'top', file: 'top-1.lua', numberOfKeys: 1 });
    expect(script?.lua).toBe(
      '-- top\nlocal function b() return 1 end\nlocal function a() return b() end\n-- (includes/b.lua already included above)\nreturn KEYS[1]\n',
    );
  });

  it('when only include folders sit beside the scripts, then only the scripts are read', () => {
    tree({ 'x.lua': 'return #KEYS\n', 'includes/y.lua': 'local y = 1\n' });
    expect(readScripts(dir).map((script) => script.name)).toEqual(['x']);
  });

  it('when an include is missing, then loading fails naming the including file', () => {
    tree({ 'top-1.lua': '--- @include "includes/nope"\nreturn KEYS[1]\n' });
    expect(() => loadScript(path.join(dir, 'top-1.lua'))).toThrow(/top-1\.lua includes .*includes\/nope\.lua, which cannot be read/);
  });

  it('when includes form a cycle, then loading fails and shows the cycle', () => {
    tree({
      'top-1.lua': '--- @include "includes/a"\nreturn KEYS[1]\n',
      'includes/a.lua': '--- @include "b"\n',
      'includes/b.lua': '--- @include "a"\n',
    });
    expect(() => loadScript(path.join(dir, 'top-1.lua'))).toThrow('include cycle: top-1.lua → a.lua → b.lua → a.lua');
  });

  it('when a file includes itself, then loading fails', () => {
    tree({ 'includes/self.lua': '--- @include "self"\n', 'top-1.lua': '--- @include "includes/self"\nreturn KEYS[1]\n' });
    expect(() => loadScript(path.join(dir, 'top-1.lua'))).toThrow(/include cycle/);
  });

  it('when a script file is misnamed, then loading fails', () => {
    tree({ 'bad_name-x.lua': 'return 1\n' });
    expect(() => readScripts(dir)).toThrow(/must be named name-KEYCOUNT\.lua or name\.lua/);
  });
});
