// The OpenAPI document is generated from the route schemas and covers every route of API.md.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { testApi } from '../../support/api.ts';

const fixture = testApi();
let api: RunningService;
beforeAll(async () => {
  ({ service: api } = await fixture.open());
});
afterAll(() => fixture.close());

const CONTRACT_ROUTES = [
  'get /v1/sales/{saleId}',
  'post /v1/sales/{saleId}/orders',
  'get /v1/orders/{orderId}',
  'get /v1/users/me/orders',
  'post /v1/orders/{orderId}/payment',
  'post /v1/orders/{orderId}/cancel',
  'post /v1/admin/sales',
  'get /v1/admin/sales',
  'post /v1/admin/sales/{saleId}/close',
  'post /v1/admin/sales/{saleId}/items/{sku}/restock',
  'post /v1/admin/sales/{saleId}/items/{sku}/delist',
  'post /v1/admin/sales/{saleId}/items/{sku}/relist',
  'get /v1/admin/sales/{saleId}/report',
  'get /health/live',
  'get /health/ready',
];

it('when /docs/json is fetched, then it documents every contract route with its responses', async () => {
  const response = await api.app!.inject({ method: 'GET', url: '/docs/json' });
  expect(response.statusCode).toBe(200);
  const document = response.json() as { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
  expect(document.openapi).toMatch(/^3\./);
  const documented = Object.entries(document.paths).flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method} ${path}`));
  for (const route of CONTRACT_ROUTES) expect(documented).toContain(route);
  const reserve = document.paths['/v1/sales/{saleId}/orders']!.post!;
  expect(Object.keys(reserve.responses)).toEqual(expect.arrayContaining(['201', '404', '409', '422', '429', '503']));
});

it('when /docs is opened, then the UI is served without a token', async () => {
  const response = await api.app!.inject({ method: 'GET', url: '/docs/' });
  expect(response.statusCode).toBe(200);
  expect(response.headers['content-type']).toMatch(/text\/html/);
});
