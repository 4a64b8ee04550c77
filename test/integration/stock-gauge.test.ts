// flashsale_stock_available across several processes: stock falls on accepts and rises again on
// restocks, cancels and expiries, so no process's own last sighting can stand for the cluster. The
// gauge is read from Redis at scrape time by the worker role alone; the aggregate of every process's
// metrics (as the cluster primary builds it) then shows what Redis holds.
import { AggregatorRegistry } from 'prom-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../src/service.ts';
import { startTestApi, startTestService, testApi, type Tokens } from '../support/api.ts';
import type { App } from '../../src/http/app.ts';

const api = testApi();
let first: RunningService;
let second: RunningService;
let worker: RunningService;
let tk: Tokens;

beforeAll(async () => {
  const opened = await api.open();
  ({ tk } = opened);
  first = opened.service;
  second = await startTestApi(opened.ctx);
  worker = await startTestService(opened.ctx, 'worker');
});

afterAll(async () => {
  await Promise.all([second?.stop(), worker?.stop()]);
  await api.close();
});

async function aggregatedStock(saleId: string, sku: string): Promise<number[]> {
  const replies = await Promise.all([first, second, worker].map((service) => service.metrics.registry.getMetricsAsJSON()));
  const metric = await AggregatorRegistry.aggregate(replies).getSingleMetric('flashsale_stock_available')?.get();
  return (metric?.values ?? []).filter((v) => v.labels.sale === saleId && v.labels.sku === sku).map((v) => v.value);
}

const app = (service: RunningService): App => service.app!;

it('when an item sold out through one API process is restocked through another, then the aggregated gauge shows the stock Redis holds', async () => {
  const sale = await api.createSale([{ sku: 'hot', stock: 1, perUserLimit: 1 }]);
  const ordered = await app(first).inject({
    method: 'POST',
    url: `/v1/sales/${sale.id}/orders`,
    headers: { authorization: tk.shopper('buyer-1') },
    payload: { sku: 'hot', quantity: 1 },
  });
  expect(ordered.statusCode, ordered.body).toBe(201);
  const restocked = await app(second).inject({
    method: 'POST',
    url: `/v1/admin/sales/${sale.id}/items/hot/restock`,
    headers: { authorization: tk.admin() },
    payload: { quantity: 4 },
  });
  expect(restocked.statusCode, restocked.body).toBe(200);

  expect(await api.available(sale.id, 'hot')).toBe(4);
  // The worker's list of live sales may be up to a second old (a new sale joins it within that).
  await expect.poll(() => aggregatedStock(sale.id, 'hot'), { timeout: 3_000, interval: 100 }).toEqual([4]);
  // The API processes report no sighting of their own, which could only be stale.
  for (const service of [first, second]) expect(service.metrics.registry.getSingleMetric('flashsale_stock_available')).toBeUndefined();
});

it('when an item in 4 stock shards sells through shoppers homed on different shards, then the gauge shows its total: every shard plus the units held at its low-stock level', async () => {
  const sale = await api.createSale([{ sku: 'sharded', stock: 45, perUserLimit: 3, stockShards: 4, lowStock: { units: 5 } }]);
  const orders = await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      app(i % 2 === 0 ? first : second).inject({
        method: 'POST',
        url: `/v1/sales/${sale.id}/orders`,
        headers: { authorization: tk.shopper(`gauge-shopper-${i}`) },
        payload: { sku: 'sharded', quantity: 2 },
      }),
    ),
  );
  expect(orders.map((res) => res.statusCode)).toEqual(Array(6).fill(201));

  // 45 − 12 sold: 28 on sale over the shards (api.available sums them) and 5 held on shard 0.
  expect(await api.available(sale.id, 'sharded')).toBe(28);
  await expect.poll(() => aggregatedStock(sale.id, 'sharded'), { timeout: 3_000, interval: 100 }).toEqual([33]);
});
