// The load kit's calls to the service outside the measured phases: creating a sale as an
// operator, and buying one order as a shopper (the sold-out probe).
import { setTimeout as sleep } from 'node:timers/promises';
import type { SaleBody } from '../tools/sale-body.ts';
import type { Tokens } from '../tools/tokens.ts';
import type { AcceptedOrder } from './recorder.ts';

export const OPERATOR = 'load-test-operator';

/** A 503 is load shedding, answered before anything is decided: retried, as a storefront would. */
const SHED_RETRIES = 40;
const SHED_PAUSE_MS = 250;

export class SaleClient {
  constructor(
    private readonly origin: string,
    private readonly tokens: Tokens,
  ) {}

  /** The operator's bearer token, for the admin report too. */
  get adminToken(): string {
    return this.tokens.admin(OPERATOR);
  }

  async createSale(body: SaleBody): Promise<void> {
    const created = await this.#post(this.adminToken, '/v1/admin/sales', body);
    if (created.status !== 201) throw new Error(`creating sale ${body.id} failed: ${created.status} ${await created.text()}`);
  }

  async buy(saleId: string, userId: string, sku: string, quantity: number): Promise<AcceptedOrder> {
    const response = await this.#post(this.tokens.shopper(userId), `/v1/sales/${encodeURIComponent(saleId)}/orders`, { sku, quantity });
    const order = (await response.json()) as { orderId?: string };
    if (response.status !== 201 || !order.orderId) throw new Error(`buying ${sku} in ${saleId} failed: ${response.status} ${JSON.stringify(order)}`);
    return { orderId: order.orderId, userId, sku, quantity, key: undefined, replayed: false };
  }

  async #post(authorization: string, path: string, body: unknown): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(`${this.origin}${path}`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
      if (response.status !== 503 || attempt >= SHED_RETRIES) return response;
      await response.arrayBuffer();
      await sleep(SHED_PAUSE_MS);
    }
  }
}
