// The terminal report: throughput and latency per phase and target, answers by status and by
// error code, the comparison ratios and every invariant with PASS/FAIL.
import type { Plan } from './plan.ts';
import type { LoadResult, RunSummary } from './result.ts';

export function describePlan(plan: Plan): string {
  const pace = plan.rate === undefined ? 'closed loop' : `${plan.rate} req/s (overallRate)`;
  return (
    `scenario ${plan.scenario}: ${plan.duration} s, ${plan.connections} connections, ${pace}; ` +
    `${plan.skus} SKUs × ${plan.stock} units (hot SKU ${Math.round(plan.hotShare * 100)}% of attempts, ` +
    `${Math.round(plan.keyedShare * 100)}% with an Idempotency-Key), ` +
    `per-user limit ${plan.perUserLimit}, ${plan.users} shoppers; sold-out phase ${plan.soldOutDuration} s; warm-up ${plan.warmup} s per target`
  );
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export const RUN_HEADER = ['phase', 'target', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'answers', 'unanswered', 'errors'];

export function runRow(run: RunSummary): string[] {
  const l = run.latency;
  return [run.phase, run.target, String(run.requestsPerSecond), ...[l.p50Ms, l.p90Ms, l.p99Ms, l.p999Ms, l.maxMs].map((ms) => ms.toFixed(1)), String(run.answers), String(run.unanswered), String(run.errors)];
}

export function counts(values: Readonly<Record<string, number>>): string {
  const entries = Object.entries(values).sort(([, a], [, b]) => b - a);
  return entries.length === 0 ? '—' : entries.map(([key, n]) => `${key} ${n}`).join(' · ');
}

export function formatReport(result: LoadResult): string {
  const out: string[] = [describePlan(result.plan), `sale ${result.saleId} at ${result.origin}`, ''];
  out.push(table(RUN_HEADER, result.runs.map(runRow)), '');
  for (const run of result.runs.filter((r) => r.target === 'reserve')) {
    out.push(`answers (${run.phase}, reserve) by status: ${counts(run.byStatus)}`);
    out.push(`answers (${run.phase}, reserve) by code:   ${counts(run.byCode)}`);
  }
  if (result.ratios.length > 0) {
    out.push('', 'ratios (ours / theirs):');
    for (const ratio of result.ratios) {
      const goal = ratio.goal ? `   goal ${ratio.goal}: ${ratio.met ? 'met' : 'NOT met'}` : '';
      out.push(`  ${ratio.name.padEnd(44)} ${ratio.value.toFixed(2)}×${goal}`);
    }
  }
  const p = result.persistence;
  out.push(
    '',
    `persistence: ${p.drained ? 'caught up' : 'NOT caught up'} ${p.drainSeconds} s after the last phase ` +
      `(accepted ${p.ordersAccepted ?? '?'}, in Postgres ${p.ordersPersisted ?? '?'})`,
    '',
    'invariants:',
  );
  for (const invariant of result.invariants) out.push(`  ${invariant.verdict}  ${invariant.name} — ${invariant.detail}`);
  out.push('', `${result.passed ? 'PASS' : 'FAIL'}: ${result.invariants.filter((i) => i.verdict === 'FAIL').length} invariant(s) violated`);
  out.push(`report: ${result.files.json}`, `        ${result.files.html}`);
  return out.join('\n');
}
