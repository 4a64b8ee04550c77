// The drill report: what broke, how long recovery took, what the service refused meanwhile (answers
// counted by status and code, per phase), what was lost, and every invariant checked. Printed to the
// console and written as drill.json (machine-readable, one entry per scenario) and drill.html.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface TimelineEvent {
  /** Milliseconds since the scenario's rush started. */
  readonly atMs: number;
  readonly event: string;
}

export type DrillStatus = 'passed' | 'failed';

export interface DrillReport {
  readonly scenario: string;
  readonly status: DrillStatus;
  readonly startedAt: string;
  readonly durationMs: number;
  /** What broke, in one sentence. */
  readonly fault: string;
  readonly timeline: readonly TimelineEvent[];
  /** From the fault to the service being whole again, as `recoveryMeaning` defines it; null if it never was. */
  readonly recoveryMs: number | null;
  readonly recoveryMeaning: string;
  /** Every answer the rush got (each attempt, retries included), by phase, counted by label ("201", "503 REDIS_UNAVAILABLE", …). */
  readonly answers: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Orders answered 201 (distinct order ids). */
  readonly accepted: number;
  /** 201s with no row in Postgres once the drill ended: should be 0. */
  readonly lost: number;
  /**
   * Set where the fault itself destroys acknowledged-but-unpersisted orders (Redis data lost):
   * how many 201s Postgres did not hold yet when it struck. Losing those cannot be undone from
   * Postgres; losing any other would be a bug. The drill passes with lost ≤ this window.
   */
  readonly lossWindow?: number;
  readonly checks: readonly Check[];
  /** Scenario-specific measurements (durability costs, queue drains, …). */
  readonly figures: Readonly<Record<string, number | string>>;
  /** The error that ended the scenario early, if one did. */
  readonly error?: string;
}

export interface DrillRun {
  readonly generatedAt: string;
  readonly host: string;
  readonly drills: readonly DrillReport[];
}

/** passed iff every check passed, nothing was lost, the service recovered and nothing threw. */
export function verdict(report: Omit<DrillReport, 'status'>): DrillStatus {
  const ok = report.error === undefined && report.lost <= (report.lossWindow ?? 0) && report.recoveryMs !== null && report.checks.every((c) => c.ok);
  return ok ? 'passed' : 'failed';
}

export function renderText(report: DrillReport): string {
  const lines = [`=== drill ${report.scenario}: ${report.status.toUpperCase()} (${(report.durationMs / 1000).toFixed(1)} s) ===`];
  lines.push(`what broke: ${report.fault}`);
  lines.push(`recovery: ${report.recoveryMs === null ? 'NEVER' : `${report.recoveryMs} ms`} (${report.recoveryMeaning})`);
  lines.push(`accepted (201): ${report.accepted}; lost: ${report.lost}${lossWindowText(report)}`);
  for (const [phase, counts] of Object.entries(report.answers)) lines.push(`answers ${phase}: ${formatCounts(counts)}`);
  for (const event of report.timeline) lines.push(`  t+${String(event.atMs).padStart(6)} ms  ${event.event}`);
  for (const check of report.checks) lines.push(`  [${check.ok ? 'ok' : 'FAIL'}] ${check.name}: ${check.detail}`);
  for (const [name, value] of Object.entries(report.figures)) lines.push(`  ${name}: ${value}`);
  if (report.error !== undefined) lines.push(`error: ${report.error}`);
  return lines.join('\n');
}

function lossWindowText(report: DrillReport): string {
  return report.lossWindow === undefined
    ? ''
    : ` (the fault struck with ${report.lossWindow} acknowledged orders not yet in Postgres: those cannot be rebuilt)`;
}

function formatCounts(counts: Readonly<Record<string, number>>): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? '(none)' : entries.map(([label, n]) => `${label} ×${n}`).join(', ');
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

export function renderHtml(run: DrillRun): string {
  const section = (r: DrillReport) => `
<section class="${r.status}">
  <h2>${escapeHtml(r.scenario)} — ${r.status.toUpperCase()}</h2>
  <table>
    <tr><th>What broke</th><td>${escapeHtml(r.fault)}</td></tr>
    <tr><th>Recovery</th><td>${r.recoveryMs === null ? 'never' : `${r.recoveryMs} ms`} — ${escapeHtml(r.recoveryMeaning)}</td></tr>
    <tr><th>Accepted (201)</th><td>${r.accepted}</td></tr>
    <tr><th>Lost</th><td>${r.lost}${escapeHtml(lossWindowText(r))}</td></tr>
    <tr><th>Duration</th><td>${(r.durationMs / 1000).toFixed(1)} s, started ${escapeHtml(r.startedAt)}</td></tr>
    ${r.error === undefined ? '' : `<tr><th>Error</th><td><pre>${escapeHtml(r.error)}</pre></td></tr>`}
  </table>
  <h3>Answers by phase</h3>
  <table><tr><th>phase</th><th>answers</th></tr>
  ${Object.entries(r.answers).map(([phase, counts]) => `<tr><td>${escapeHtml(phase)}</td><td>${escapeHtml(formatCounts(counts))}</td></tr>`).join('\n  ')}
  </table>
  <h3>Invariants</h3>
  <table><tr><th></th><th>check</th><th>detail</th></tr>
  ${r.checks.map((c) => `<tr class="${c.ok ? 'ok' : 'fail'}"><td>${c.ok ? '✔' : '✘'}</td><td>${escapeHtml(c.name)}</td><td>${escapeHtml(c.detail)}</td></tr>`).join('\n  ')}
  </table>
  <h3>Timeline</h3>
  <table><tr><th>t (ms)</th><th>event</th></tr>
  ${r.timeline.map((e) => `<tr><td>${e.atMs}</td><td>${escapeHtml(e.event)}</td></tr>`).join('\n  ')}
  </table>
  ${Object.keys(r.figures).length === 0 ? '' : `<h3>Figures</h3><table>${Object.entries(r.figures).map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`).join('')}</table>`}
</section>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Disaster drill report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; max-width: 70em; }
table { border-collapse: collapse; margin: .5em 0 1em; } th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
section { border-left: 6px solid #999; padding-left: 1em; margin-bottom: 2em; }
section.passed { border-color: #2a2; } section.failed { border-color: #c22; }
tr.fail td { background: #fdd; } pre { white-space: pre-wrap; margin: 0; }
</style></head><body>
<h1>Disaster drill report</h1>
<p>Generated ${escapeHtml(run.generatedAt)} on ${escapeHtml(run.host)}:
${run.drills.map((d) => `${escapeHtml(d.scenario)} <b>${d.status}</b>`).join(', ')}.</p>
${run.drills.map(section).join('\n')}
</body></html>
`;
}

/** Writes drill.json and drill.html into dir; returns their paths. */
export async function writeReports(dir: string, run: DrillRun): Promise<{ json: string; html: string }> {
  await mkdir(dir, { recursive: true });
  const json = join(dir, 'drill.json');
  const html = join(dir, 'drill.html');
  await writeFile(json, `${JSON.stringify(run, null, 2)}\n`);
  await writeFile(html, renderHtml(run));
  return { json, html };
}
