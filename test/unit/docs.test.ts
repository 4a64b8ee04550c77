// The project's own docs stay true to the code they describe: every error code of the catalogue
// is in docs/api.md's error table with its status, every setting in docs/design.md's table, every
// script of lua/ in its script table, and the README sends readers to docs/, not outside the repository.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { API_ERRORS } from '../../src/http/errors.ts';

const root = new URL('../../', import.meta.url);
const read = (file: string): string => readFileSync(new URL(file, root), 'utf8');

/** code → status, from the table under "## Errors" (rows like | 409 | `A`, `B` | meaning |). */
function documentedErrors(markdown: string): Map<string, number> {
  const section = markdown.split(/^## Errors\s*$/m)[1]?.split(/^## /m)[0] ?? '';
  const documented = new Map<string, number>();
  for (const row of section.matchAll(/^\|\s*(\d{3})\s*\|([^|]*)\|/gm)) {
    for (const code of row[2]!.matchAll(/`([A-Z_]+)`/g)) documented.set(code[1]!, Number(row[1]));
  }
  return documented;
}

describe('docs/api.md', () => {
  const documented = documentedErrors(read('docs/api.md'));

  it('when read, then its error table lists every code of the catalogue with the status the API answers', () => {
    expect(documented.size).toBeGreaterThan(0);
    for (const [code, [status]] of Object.entries(API_ERRORS)) expect({ code, status: documented.get(code) }).toEqual({ code, status });
  });
});

describe('docs/design.md', () => {
  it('when read, then its script table names every script of lua/', () => {
    // lua/reserveOrder-8.lua is the script `reserveOrder` (the suffix is its version).
    const scripts = readdirSync(new URL('lua/', root)).flatMap((file) => /^([A-Za-z]+)(?:-\d+)?\.lua$/.exec(file)?.[1] ?? []);
    const section = read('docs/design.md').split(/^## Redis: the scripts that decide\s*$/m)[1]?.split(/^## /m)[0] ?? '';
    const documented = new Set([...section.matchAll(/^\|([^|]*)\|/gm)].flatMap((row) => [...row[1]!.matchAll(/`([A-Za-z]+)`/g)].map((name) => name[1]!)));
    expect(scripts.length).toBeGreaterThan(0);
    expect(scripts.filter((name) => !documented.has(name))).toEqual([]);
  });

  it('when read, then its configuration table names every setting of .env.example', () => {
    const settings = [...read('.env.example').matchAll(/^([A-Z_]+)=/gm)].map((match) => match[1]!);
    const section = read('docs/design.md').split(/^## Configuration\s*$/m)[1]?.split(/^## /m)[0] ?? '';
    const documented = new Set([...section.matchAll(/`([A-Z_]+)`/g)].map((match) => match[1]!));
    expect(settings.length).toBeGreaterThan(0);
    expect(settings.filter((name) => !documented.has(name))).toEqual([]);
  });
});

describe('README.md', () => {
  const readme = read('README.md');

  it('when it names the contract and the design, then it points inside the repository', () => {
    expect(readme).toContain('docs/api.md');
    expect(readme).toContain('docs/design.md');
    expect(readme).not.toMatch(/\.\.\/shared\//);
  });
});
