// Metric labels come from what callers send (sale ids and SKUs in the path and body). Only ids some
// answer proved to exist may become label values: made-up ids, however many, share one series per
// result, or Prometheus would hold a series for every id an attacker invents.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { UNKNOWN_LABEL } from '../../../src/http/routes/orders.ts';
import { testApi, type Tokens } from '../../support/api.ts';

const api = testApi({ overrides: { RATE_LIMIT_USER_PER_SEC: '2' } });
let service: RunningService;
let tk: Tokens;

beforeAll(async () => {
  ({ service, tk } = await api.open());
});

afterAll(() => api.close());

async function attempt(saleId: string, sku: string, user: string): Promise<number> {
  const res = await service.app!.inject({
    method: 'POST',
    url: `/v1/sales/${saleId}/orders`,
    headers: { authorization: tk.shopper(user) },
    payload: { sku, quantity: 1 },
  });
  return res.statusCode;
}

async function reservationSeries(): Promise<{ sale: string; sku: string; result: string; value: number }[]> {
  const metric = await service.metrics.reservations.get();
  return metric.values.map((v) => ({ sale: String(v.labels.sale), sku: String(v.labels.sku), result: String(v.labels.result), value: v.value }));
}

it('when callers make up sale ids and SKUs, then no made-up id becomes a label and real ones still do', async () => {
  const sale = await api.createSale([{ sku: 'real', stock: 5 }]);
  const statuses: number[] = [];
  for (let i = 0; i < 40; i++) {
    // A made-up sale, a made-up SKU of a real sale, and enough attempts on each to be rate limited too.
    for (let n = 0; n < 3; n++) statuses.push(await attempt(`ghost-${i}`, `sku-${i}`, 'prober'));
    for (let n = 0; n < 3; n++) statuses.push(await attempt(sale.id, `ghost-sku-${i}`, 'prober'));
  }
  expect(new Set(statuses)).toEqual(new Set([404, 429]));
  expect(await attempt(sale.id, 'real', 'buyer')).toBe(201);

  const series = await reservationSeries();
  const labelled = new Set(series.filter((s) => s.value > 0).map((s) => `${s.sale}/${s.sku}`));
  expect([...labelled].sort()).toEqual([`${UNKNOWN_LABEL}/${UNKNOWN_LABEL}`, `${sale.id}/${UNKNOWN_LABEL}`, `${sale.id}/real`].sort());
  expect(series.filter((s) => s.sale.startsWith('ghost') || s.sku.startsWith('ghost') || s.sku.startsWith('sku-'))).toEqual([]);
  const total = (sale: string, sku: string) => series.filter((s) => s.sale === sale && s.sku === sku).reduce((sum, s) => sum + s.value, 0);
  const count = (sale: string, sku: string, result: string) => series.find((s) => s.sale === sale && s.sku === sku && s.result === result)?.value ?? 0;
  // Every made-up attempt is still counted, under the unknown labels (a real sale keeps its own label).
  expect(total(UNKNOWN_LABEL, UNKNOWN_LABEL) + total(sale.id, UNKNOWN_LABEL)).toBe(240);
  expect(count(sale.id, UNKNOWN_LABEL, 'item_not_found')).toBeGreaterThan(0);
  expect(count(sale.id, 'real', 'ok')).toBe(1);
});

it('when callers make up SKUs of an ended sale, then they get 404 and no made-up SKU becomes a label', async () => {
  const sale = await api.createSale([{ sku: 'gone', stock: 5 }]);
  const closed = await service.app!.inject({ method: 'POST', url: `/v1/admin/sales/${sale.id}/close`, headers: { authorization: tk.admin() } });
  expect(closed.statusCode, closed.body).toBe(200);
  // A real item's refusal from Redis proves it; later attempts may be answered from memory.
  expect(await attempt(sale.id, 'gone', 'late-1')).toBe(409);
  expect(await attempt(sale.id, 'gone', 'late-2')).toBe(409);
  // Made-up SKUs of the ended sale: the API's order of checks puts ITEM_NOT_FOUND first.
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push(await attempt(sale.id, `ended-ghost-${i}`, `ender-${i}`));
  expect(new Set(statuses)).toEqual(new Set([404]));

  const series = await reservationSeries();
  expect(series.filter((s) => s.sku.startsWith('ended-ghost'))).toEqual([]);
  expect(series.find((s) => s.sale === sale.id && s.sku === 'gone' && s.result === 'sale_ended')?.value).toBe(2);
  expect(series.find((s) => s.sale === sale.id && s.sku === UNKNOWN_LABEL && s.result === 'item_not_found')?.value).toBe(20);
});
