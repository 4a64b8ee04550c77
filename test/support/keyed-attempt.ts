// One keyed order attempt through the app, as the failover tests make them: the answer's status,
// code and Retry-After, and the order's facts when it was a 201 (for the exactly-once check).
import type { App } from '../../src/http/app.ts';
import type { OrderFacts } from '../../tools/exactly-once.ts';
import type { Tokens } from '../../tools/tokens.ts';

export interface Attempt {
  readonly userId: string;
  readonly key: string;
}

export interface Outcome {
  readonly status: number;
  readonly code: string | undefined;
  readonly retryAfter: string | undefined;
  readonly order: OrderFacts | undefined;
}

export async function keyedAttempt(app: App, auth: Tokens, saleId: string, sku: string, { userId, key }: Attempt): Promise<Outcome> {
  const response = await app.inject({
    method: 'POST',
    url: `/v1/sales/${saleId}/orders`,
    headers: { authorization: auth.shopper(userId), 'idempotency-key': key },
    payload: { sku, quantity: 1 },
  });
  const json = response.json() as { code?: string; orderId?: string };
  const retryAfter = response.headers['retry-after'];
  return {
    status: response.statusCode,
    code: json.code,
    retryAfter: retryAfter === undefined ? undefined : String(retryAfter),
    order: response.statusCode === 201 ? { id: json.orderId!, userId, sku, quantity: 1 } : undefined,
  };
}
