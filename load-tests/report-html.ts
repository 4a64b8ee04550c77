// The self-contained HTML report: inline SVG line charts of throughput and latency (p50, p99) per
// second, and the tables and invariants of the terminal report. No scripts, no external resources.
import { counts, describePlan, RUN_HEADER, runRow } from './report-text.ts';
import type { LoadResult, RunSummary } from './result.ts';

interface Series {
  readonly name: string;
  readonly color: string;
  readonly dashed: boolean;
  readonly points: readonly (readonly [number, number])[];
}

const COLORS: Readonly<Record<string, string>> = { reserve: '#d9480f', ceiling: '#1971c2', 'naive-pg': '#2f9e44' };

const escape = (text: string) => text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? c);

/** 1, 2, 5 × 10^n at or above value. */
function niceMax(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  return ([1, 2, 5, 10].find((step) => step * magnitude >= value) ?? 10) * magnitude;
}

export function lineChart(title: string, unit: string, series: readonly Series[]): string {
  const [width, height, left, right, top, bottom] = [760, 260, 64, 16, 28, 36];
  const xMax = Math.max(1, ...series.flatMap((s) => s.points.map(([x]) => x)));
  const yMax = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map(([, y]) => y))));
  const x = (v: number) => left + (v / xMax) * (width - left - right);
  const y = (v: number) => height - bottom - (v / yMax) * (height - top - bottom);
  const grid: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const value = (yMax * i) / 4;
    grid.push(`<line x1="${left}" x2="${width - right}" y1="${y(value)}" y2="${y(value)}" stroke="#e9ecef"/>`);
    grid.push(`<text x="${left - 6}" y="${y(value) + 4}" text-anchor="end">${Number(value.toPrecision(3))}</text>`);
  }
  const xStep = niceMax(xMax / 6);
  for (let v = 0; v <= xMax; v += xStep) grid.push(`<text x="${x(v)}" y="${height - bottom + 16}" text-anchor="middle">${v}</text>`);
  const lines = series.map(
    (s) =>
      `<polyline fill="none" stroke="${s.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5 4"' : ''} ` +
      `points="${s.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ')}"><title>${escape(s.name)}</title></polyline>`,
  );
  const perRow = Math.floor((width - left) / 170);
  const legend = series.map(
    (s, i) =>
      `<g transform="translate(${left + (i % perRow) * 170},${height - 6 + Math.floor(i / perRow) * 16})"><line x1="0" x2="22" y1="-4" y2="-4" stroke="${s.color}" stroke-width="2"` +
      `${s.dashed ? ' stroke-dasharray="5 4"' : ''}/><text x="28" y="0">${escape(s.name)}</text></g>`,
  );
  return (
    `<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height + 14 + 16 * Math.ceil(series.length / perRow)}" width="${width}" font-size="11" font-family="sans-serif">` +
    `<text x="${left}" y="16" font-size="13" font-weight="bold">${escape(title)}</text>` +
    `<text x="${width - right}" y="16" text-anchor="end">${escape(unit)} · x: seconds</text>` +
    grid.join('') +
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${height - bottom}" stroke="#868e96"/>` +
    `<line x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${height - bottom}" stroke="#868e96"/>` +
    lines.join('') +
    `<g transform="translate(0,14)">${legend.join('')}</g></svg></figure>`
  );
}

function phaseCharts(phase: string, runs: readonly RunSummary[]): string {
  const color = (run: RunSummary) => COLORS[run.target] ?? '#495057';
  const throughput = runs.map((run) => ({ name: run.target, color: color(run), dashed: false, points: run.timeline.map((p) => [p.second, p.answers] as const) }));
  const latency = runs.flatMap((run) => [
    { name: `${run.target} p50`, color: color(run), dashed: true, points: run.timeline.map((p) => [p.second, p.p50Ms] as const) },
    { name: `${run.target} p99`, color: color(run), dashed: false, points: run.timeline.map((p) => [p.second, p.p99Ms] as const) },
  ]);
  return lineChart(`${phase}: throughput`, 'answers per second', throughput) + lineChart(`${phase}: latency`, 'ms', latency);
}

function htmlTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const cells = (tag: string, row: readonly string[]) => `<tr>${row.map((cell) => `<${tag}>${escape(cell)}</${tag}>`).join('')}</tr>`;
  return `<table>${cells('th', header)}${rows.map((row) => cells('td', row)).join('')}</table>`;
}

export function renderHtml(result: LoadResult): string {
  const phases = [...new Set(result.runs.map((run) => run.phase))];
  const invariants = result.invariants
    .map((i) => `<tr class="${i.verdict.toLowerCase()}"><td>${i.verdict}</td><td>${escape(i.name)}</td><td>${escape(i.detail)}</td></tr>`)
    .join('');
  const ratios = result.ratios.map((r) => [r.name, `${r.value.toFixed(2)}×`, r.goal ? `${r.goal}: ${r.met ? 'met' : 'NOT met'}` : '']);
  const answers = result.runs.map((run) => [run.phase, run.target, counts(run.byStatus), counts(run.byCode)]);
  const p = result.persistence;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Load test ${escape(result.saleId)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:980px;color:#212529;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #dee2e6;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f1f3f5}tr.pass td:first-child{color:#2b8a3e;font-weight:bold}tr.fail td:first-child{color:#c92a2a;font-weight:bold}
tr.skip td:first-child{color:#868e96}.verdict{font-size:1.4rem;font-weight:bold;color:${result.passed ? '#2b8a3e' : '#c92a2a'}}figure{margin:0 0 1rem}
</style></head><body>
<h1>Load test: ${escape(result.scenario)}</h1>
<p class="verdict">${result.passed ? 'PASS — every invariant held' : 'FAIL — an invariant was violated'}</p>
<p>${escape(describePlan(result.plan))}.<br>Sale <code>${escape(result.saleId)}</code> at ${escape(result.origin)}, started ${escape(result.startedAt)}.
Latency is measured per request by the kit (in fixed-rate runs from the scheduled send time, so a stall is charged in full).</p>
<h2>Throughput and latency</h2>
${htmlTable(RUN_HEADER, result.runs.map(runRow))}
${ratios.length > 0 ? `<h2>Ratios (ours / theirs)</h2>${htmlTable(['ratio', 'value', 'goal'], ratios)}` : ''}
<h2>Invariants</h2>
<table><tr><th>verdict</th><th>invariant</th><th>detail</th></tr>${invariants}</table>
<p>Persistence ${p.drained ? 'caught up' : '<strong>did not catch up</strong>'} ${p.drainSeconds} s after the last phase
(accepted ${p.ordersAccepted ?? '?'}, in Postgres ${p.ordersPersisted ?? '?'}).</p>
<h2>Answers</h2>
${htmlTable(['phase', 'target', 'by status', 'by error code'], answers)}
<h2>Over time</h2>
${phases.map((phase) => phaseCharts(phase, result.runs.filter((run) => run.phase === phase))).join('\n')}
</body></html>
`;
}
