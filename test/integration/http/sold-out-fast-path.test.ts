// The sold-out fast path across API processes: once an item is known sold out, attempts are
// answered from memory (no Redis round trip); a restock or relist on one process reopens it on
// every process well within a second, through pub/sub.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { saleBody, startTestApi, tokens } from '../../support/api.ts';
import { createTestContext, type TestContext } from '../../support/context.ts';

let ctx: TestContext;
let first: RunningService;
let second: RunningService;
const auth = () => tokens(ctx.config.jwtSecret);

beforeAll(async () => {
  ctx = await createTestContext();
  [first, second] = await Promise.all([startTestApi(ctx), startTestApi(ctx)]);
});
afterAll(async () => {
  await Promise.all([first.stop(), second.stop()]);
  await ctx.cleanup();
});

const attempt = (service: RunningService, saleId: string, user: string) =>
  service.app!.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: auth().shopper(user) }, payload: { sku: 'one', quantity: 1 } });

it('when an item sold out is restocked (or relisted) on one process, then every process sells it again within a second', async () => {
  const body = saleBody([{ sku: 'one', stock: 1, perUserLimit: 1 }]);
  expect((await first.app!.inject({ method: 'POST', url: '/v1/admin/sales', headers: { authorization: auth().admin() }, payload: body })).statusCode).toBe(201);
  expect((await attempt(first, body.id, 'buyer')).statusCode).toBe(201);
  // Each process learns the item is sold out from one Redis answer, then answers from memory.
  for (const service of [first, second]) {
    expect((await attempt(service, body.id, 'late-1')).json().code).toBe('SOLD_OUT');
    const before = service.reservations.closedItems.get(body.id, 'one');
    expect(before).toBe('SOLD_OUT');
  }
  expect((await second.reservations.reserve({ saleId: body.id, sku: 'one', userId: 'late-1', quantity: 1 }))).toMatchObject({ kind: 'refused', fromMemory: true });

  const restock = await first.app!.inject({ method: 'POST', url: `/v1/admin/sales/${body.id}/items/one/restock`, headers: { authorization: auth().admin() }, payload: { quantity: 1 } });
  expect(restock.statusCode).toBe(200);
  const started = Date.now();
  while (second.reservations.closedItems.get(body.id, 'one') !== undefined && Date.now() - started < 1_000) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const reopenedAfterMs = Date.now() - started;
  expect((await attempt(second, body.id, 'late-2')).statusCode).toBe(201);
  // Well under the 1 s the mark would take to expire on its own: pub/sub did it.
  expect(reopenedAfterMs).toBeLessThan(500);
});
