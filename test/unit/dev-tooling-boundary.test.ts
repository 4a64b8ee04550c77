// Shared dev tooling (tools/) and test support serve tests, the load kit, the demo and the
// benchmark; production code must never depend on them (the image ships src/ alone).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

it('when the imports of src/ are read, then none reaches into tools/, test/, load-tests/, scripts/ or bench/', () => {
  const offending = sources(join(ROOT, 'src')).flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(/from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g)]
      .map((match) => match[1] ?? match[2] ?? '')
      .filter((specifier) => specifier.startsWith('.'))
      .filter((specifier) => /^(tools|test|load-tests|scripts|bench)\//.test(relative(ROOT, join(file, '..', specifier))))
      .map((specifier) => `${relative(ROOT, file)} imports ${specifier}`),
  );
  expect(sources(join(ROOT, 'src')).length).toBeGreaterThan(10);
  expect(offending).toEqual([]);
});
