// The seams between folders hold: stock/ (the scripts' bindings) depends on no domain above it,
// domain folders do not import the HTTP layer, and no relative import cycle exists in src/.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Relative imports (type-only included) of every file, as paths relative to src/. */
const graph = new Map<string, string[]>(
  sourceFiles(SRC).map((file) => {
    const source = readFileSync(file, 'utf8');
    const targets = [...source.matchAll(/^(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)].map((match) =>
      path.relative(SRC, path.resolve(path.dirname(file), match[1] ?? '')),
    );
    return [path.relative(SRC, file), targets];
  }),
);

function cycles(): string[][] {
  const found: string[][] = [];
  const done = new Set<string>();
  const visit = (node: string, stack: string[]) => {
    if (stack.includes(node)) return void found.push([...stack.slice(stack.indexOf(node)), node]);
    if (done.has(node)) return;
    for (const next of graph.get(node) ?? []) visit(next, [...stack, node]);
    done.add(node);
  };
  for (const node of graph.keys()) visit(node, []);
  return found;
}

describe('module seams', () => {
  it('when stock/ is read, then it imports nothing from orders/, sales/ or http/', () => {
    const upward = [...graph].flatMap(([file, targets]) =>
      file.startsWith('stock/') ? targets.filter((t) => /^(orders|sales|http)\//.test(t)).map((t) => `${file} -> ${t}`) : [],
    );
    expect(graph.size).toBeGreaterThan(20);
    expect(upward).toEqual([]);
  });

  it('when the domain folders are read, then none imports the HTTP layer', () => {
    const toHttp = [...graph].flatMap(([file, targets]) =>
      /^(stock|orders|sales)\//.test(file) ? targets.filter((t) => t.startsWith('http/')).map((t) => `${file} -> ${t}`) : [],
    );
    expect(toHttp).toEqual([]);
  });

  it('when every relative import in src/ is followed, then no cycle is found', () => {
    expect(cycles()).toEqual([]);
  });
});
