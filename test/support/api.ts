// Helpers for HTTP tests: a running API on this file's database and namespace, signed tokens,
// and a sale body builder.
import { createSigner } from 'fast-jwt';
import { createLogger } from '../../src/logger.ts';
import { startService, type RunningService } from '../../src/service.ts';
import type { TestContext } from './context.ts';

export async function startTestApi(ctx: TestContext, overrides: Record<string, string> = {}): Promise<RunningService> {
  const config = ctx.configWith({ RATE_LIMIT_USER_PER_SEC: '0', ...overrides });
  return startService(config, createLogger(config), 'api');
}

export function tokens(secret: string) {
  const sign = createSigner({ key: secret, algorithm: 'HS256' });
  return {
    shopper: (userId: string) => `Bearer ${sign({ sub: userId })}`,
    admin: (userId = 'ops') => `Bearer ${sign({ sub: userId, role: 'admin' })}`,
    sign: (claims: Record<string, unknown>) => `Bearer ${sign(claims)}`,
  };
}

let saleCounter = 0;

export interface SaleItemInput {
  sku: string;
  stock: number;
  perUserLimit?: number;
  unitPrice?: number;
  lowStock?: { percent: number } | { units: number };
}

/** A sale body for POST /v1/admin/sales, active now unless times are given. */
export function saleBody(items: SaleItemInput[], overrides: Record<string, unknown> = {}) {
  const now = Date.now();
  return {
    id: `sale-${process.pid}-${++saleCounter}`,
    name: 'Double 11',
    startsAt: new Date(now - 60_000).toISOString(),
    endsAt: new Date(now + 3_600_000).toISOString(),
    currency: 'CNY',
    paymentWindowSeconds: 900,
    items: items.map((item) => ({
      sku: item.sku,
      name: `Item ${item.sku}`,
      unitPrice: item.unitPrice ?? 399900,
      stock: item.stock,
      perUserLimit: item.perUserLimit ?? 2,
      ...(item.lowStock && { lowStock: item.lowStock }),
    })),
    ...overrides,
  };
}
