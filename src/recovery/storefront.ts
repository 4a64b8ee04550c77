// The storefront's answer while a sale is rebuilt: a route about to say SALE_NOT_FOUND or
// ITEM_NOT_FOUND for a sale Postgres has live (and an item it lists) answers 503 SALE_RECOVERING
// with Retry-After instead, and thereby starts the rebuild if no check has yet. One hook on the
// answer, so the routes themselves stay as they are.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { apiErrorBody } from '../http/errors.ts';

/** What the hook asks: is this "not found" the sale being rebuilt? */
export interface RecoveringSales {
  recovering(saleId: string, sku?: string): Promise<boolean>;
  /** The sale of an order Postgres holds; undefined for an unknown order. */
  saleOfOrder(orderId: string): Promise<string | undefined>;
}

/** Seconds a shopper is told to wait: a rebuild takes well under a second per thousand live orders. */
export const RECOVERING_RETRY_AFTER_SECONDS = 1;

const STOREFRONT_ROUTES = new Set(['/v1/sales/:saleId', '/v1/sales/:saleId/orders']);
const NOT_FOUND = new Set(['SALE_NOT_FOUND', 'ITEM_NOT_FOUND']);
// A pending order found only in Postgres cannot be paid or cancelled (its record is Redis's): the
// lifecycle fails on it. While its sale is rebuilt that is an outage to wait out, not a bug.
const ORDER_ROUTES = new Set(['/v1/orders/:orderId/payment', '/v1/orders/:orderId/cancel']);

function notFoundCode(payload: unknown): string | undefined {
  const code = (payload as { code?: unknown } | null)?.code;
  return typeof code === 'string' && NOT_FOUND.has(code) ? code : undefined;
}

function recoveringAnswer(reply: FastifyReply) {
  reply.code(503).header('retry-after', RECOVERING_RETRY_AFTER_SECONDS);
  return apiErrorBody('SALE_RECOVERING');
}

export function installRecoveringAnswers(app: FastifyInstance, sales: RecoveringSales): void {
  app.addHook('preSerialization', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const route = request.routeOptions.url ?? '';
    if (reply.statusCode === 500 && ORDER_ROUTES.has(route)) {
      const orderId = (request.params as { orderId?: unknown }).orderId;
      const saleId = typeof orderId === 'string' ? await sales.saleOfOrder(orderId).catch(() => undefined) : undefined;
      const recovering = saleId !== undefined && (await sales.recovering(saleId).catch(() => false));
      return recovering ? recoveringAnswer(reply) : payload;
    }
    if (reply.statusCode !== 404 || !STOREFRONT_ROUTES.has(route)) return payload;
    const code = notFoundCode(payload);
    const saleId = (request.params as { saleId?: unknown }).saleId;
    if (!code || typeof saleId !== 'string') return payload;
    // An order attempt names its SKU: one the sale never had stays a 404 even while the sale is rebuilt.
    const sku = (request.body as { sku?: unknown } | undefined)?.sku;
    // Should the check itself fail (Redis or Postgres away), the route's own answer stands.
    const recovering = await sales.recovering(saleId, typeof sku === 'string' ? sku : undefined).catch((err: unknown) => {
      request.log.warn({ err, saleId }, 'could not tell whether the sale is being rebuilt');
      return false;
    });
    return recovering ? recoveringAnswer(reply) : payload;
  });
}
