// A sale stays "live" (its outbox persisted, its orders expired and found by id) for as long as one
// of its orders may still be pending: until its end (or close) plus its payment window plus a margin.
// A fixed day after the end would drop sales whose payment window is longer (up to 7 days).
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningService } from '../../../src/service.ts';
import { testApi } from '../../support/api.ts';

const api = testApi();
let service: RunningService;

beforeAll(async () => {
  ({ service } = await api.open());
});

afterAll(() => api.close());

const DAY = 24 * 60 * 60 * 1000;

it('when a sale ended more than a day ago but its payment window still runs, then it is live until end + window + margin', async () => {
  const sale = await api.createSale([{ sku: 'a', stock: 1 }], { paymentWindowSeconds: 7 * 24 * 60 * 60 });
  const short = await api.createSale([{ sku: 'a', stock: 1 }], { paymentWindowSeconds: 60 });
  const endsAt = Date.parse(sale.endsAt);

  // Three days after the end: an order taken at the last moment may pay for four more days.
  const threeDaysOn = await service.sales.liveSaleIds({ fresh: true }, endsAt + 3 * DAY);
  expect(threeDaysOn).toContain(sale.id);
  expect(threeDaysOn).not.toContain(short.id);

  // Past the end, the whole window and the day's margin: nothing of it can be pending any more.
  const after = await service.sales.liveSaleIds({ fresh: true }, endsAt + 8 * DAY + 1_000);
  expect(after).not.toContain(sale.id);
});
