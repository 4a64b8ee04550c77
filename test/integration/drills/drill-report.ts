// What every drill test asserts about its report, and how it shows it: the report printed, then
// no error, every invariant held, nothing lost, a measured recovery, written out as json + html.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { renderText, writeReports, type DrillReport } from '../../../tools/drill/report.ts';

export async function expectDrillPassed(report: DrillReport): Promise<void> {
  console.info(renderText(report));
  expect(report.error).toBeUndefined();
  expect(report.checks.filter((check) => !check.ok)).toEqual([]);
  expect(report.checks.length).toBeGreaterThanOrEqual(7);
  // Only redis-loss has a loss window: the 201s Redis lost before they were persisted.
  expect(report.lost).toBeLessThanOrEqual(report.lossWindow ?? 0);
  expect(report.accepted).toBeGreaterThan(0);
  expect(report.recoveryMs).not.toBeNull();
  expect(report.status).toBe('passed');
  const dir = await mkdtemp(join(tmpdir(), 'drill-'));
  try {
    const paths = await writeReports(dir, { generatedAt: new Date().toISOString(), host: 'test', drills: [report] });
    const written = JSON.parse(await readFile(paths.json, 'utf8')) as { drills: DrillReport[] };
    expect(written.drills[0]).toEqual(JSON.parse(JSON.stringify(report)));
    expect(await readFile(paths.html, 'utf8')).toContain(`${report.scenario} — PASSED`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The answers of one phase of the rush, by label. */
export function answersIn(report: DrillReport, phase: string): Readonly<Record<string, number>> {
  return report.answers[phase] ?? {};
}

export const countWhere = (answers: Readonly<Record<string, number>>, match: (label: string) => boolean): number =>
  Object.entries(answers)
    .filter(([label]) => match(label))
    .reduce((sum, [, n]) => sum + n, 0);
