// Expiry survives a worker restart: deadlines live in Redis, so orders that fall due while no
// worker runs are expired (once) by the next worker that starts.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { saleBody, startTestService, testApi, tokens } from '../../support/api.ts';
import type { TestContext } from '../../support/context.ts';

const fixture = testApi();
let ctx: TestContext;
let api: RunningService;
const auth = () => tokens(ctx.config.jwtSecret);

beforeAll(async () => {
  ({ ctx, service: api } = await fixture.open());
});

afterAll(() => fixture.close());

it('when orders fall due while no worker runs, then the next worker expires each of them once', async () => {
  const worker = await startTestService(ctx, 'worker');
  const body = saleBody([{ sku: 'w', stock: 10, perUserLimit: 1 }], { paymentWindowSeconds: 1 });
  expect((await api.app!.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth().admin() }, payload: body })).statusCode).toBe(201);
  const orders = await Promise.all(
    Array.from({ length: 5 }, (_, i) =>
      api.app!.inject({ method: 'POST', url: `/v1/sales/${body.id}/orders`, headers: { authorization: auth().shopper(`sleepy-${i}`) }, payload: { sku: 'w', quantity: 1 } }),
    ),
  );
  expect(orders.every((response) => response.statusCode === 201)).toBe(true);
  await worker.stop();

  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const stillPending = await api.app!.inject({ method: 'GET', url: `/v1/orders/${orders[0]!.json().orderId}`, headers: { authorization: auth().shopper('sleepy-0') } });
  expect(stillPending.json().status).toBe('pending_payment');

  const restarted = await startTestService(ctx, 'worker');
  try {
    const deadline = Date.now() + 10_000;
    let statuses: string[] = [];
    while (Date.now() < deadline) {
      statuses = await Promise.all(
        orders.map(async (response, i) => (await api.app!.inject({ method: 'GET', url: `/v1/orders/${response.json().orderId}`, headers: { authorization: auth().shopper(`sleepy-${i}`) } })).json().status as string),
      );
      if (statuses.every((status) => status === 'expired')) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(statuses).toEqual(Array(5).fill('expired'));
    const released = (await restarted.metrics.unitsReleased.get()).values.filter((v) => v.labels.reason === 'expired').reduce((sum, v) => sum + v.value, 0);
    expect(released).toBe(5);
    const report = await api.app!.inject({ method: 'GET', url: `/v1/admin/sales/${body.id}/report`, headers: { authorization: auth().admin() } });
    expect(report.json().items[0]).toMatchObject({ available: 10, reserved: 0 });
  } finally {
    await restarted.stop();
  }
});
