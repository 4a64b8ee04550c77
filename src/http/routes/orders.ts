// Shopper routes for orders: the reserve decision (one Lua round trip, or none when the item is
// known closed), reading an order back (read-your-writes) and the shopper's own history.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Logger } from '../../logger.ts';
import type { Metrics } from '../../metrics.ts';
import type { OrderLifecycle } from '../../orders/lifecycle.ts';
import type { OrderStore } from '../../orders/order-store.ts';
import type { Reservation, Reservations } from '../../orders/reservations.ts';
import { principal, type Authenticator } from '../auth.ts';
import { sendError } from '../errors.ts';
import { presentOrder } from '../present.ts';
import { ErrorBody, Identifier, OrderBody, OrderParams, PaymentBody, ReserveBody, ReserveHeaders, SaleParams } from '../schemas.ts';

export interface OrderRouteOptions {
  readonly auth: Authenticator;
  readonly reservations: Reservations;
  readonly orders: OrderStore;
  readonly lifecycle: OrderLifecycle;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

// The attempt limit counts per clock second, so the next second is never more than one away.
const RATE_LIMIT_RETRY_AFTER_SECONDS = 1;
// A replica that did not acknowledge in time is lagging or being replaced (a failover takes 2–3 s).
const NOT_DURABLE_RETRY_AFTER_SECONDS = 2;

/** The label of a sale or SKU that no answer has shown to exist. */
export const UNKNOWN_LABEL = '_unknown';

// Answers that prove the sale and the item exist: only those may name them in a label, so a caller
// who makes up ids (or is rate limited on made-up ids) cannot create metric series without end.
// A refusal from memory proves nothing (Redis was not asked): it names a pair only if already known.
const UNPROVEN = new Set<string>(['SALE_NOT_FOUND', 'ITEM_NOT_FOUND', 'RATE_LIMITED']);

const RESULT_LABELS = { accepted: 'ok', replayed: 'replayed', unacknowledged: 'not_durable' } as const;

/** Labels for the reservation counter: real ids once some answer proved them, else UNKNOWN_LABEL. */
function reservationLabels(known: Set<string>, saleId: string, sku: string, reservation: Reservation) {
  const result = reservation.kind === 'refused' ? reservation.code.toLowerCase() : RESULT_LABELS[reservation.kind];
  const item = `${saleId}\u0000${sku}`;
  if (reservation.kind !== 'refused' || (!reservation.fromMemory && !UNPROVEN.has(reservation.code))) known.add(item);
  if (known.has(item)) return { sale: saleId, sku, result };
  const saleProven = reservation.kind === 'refused' && reservation.code === 'ITEM_NOT_FOUND';
  return { sale: saleProven ? saleId : UNKNOWN_LABEL, sku: UNKNOWN_LABEL, result };
}

function observe(metrics: Metrics, logger: Logger, known: Set<string>, saleId: string, sku: string, reservation: Reservation): void {
  metrics.reservations.inc(reservationLabels(known, saleId, sku, reservation));
  if (reservation.kind !== 'accepted') return;
  if (reservation.delistedNow) {
    metrics.itemsDelisted.inc({ sale: saleId, sku, reason: 'low_stock' });
    logger.warn({ event: 'item_delisted', saleId, sku, reason: 'low_stock', available: reservation.availableAfter }, 'item delisted: stock fell to its low-stock level');
  }
  if (reservation.soldOutNow) {
    metrics.itemsSoldOut.inc({ sale: saleId, sku });
    logger.warn({ event: 'item_sold_out', saleId, sku }, 'item sold out');
  }
}

export const orderRoutes: FastifyPluginAsyncTypebox<OrderRouteOptions> = async (app, options) => {
  const { auth, reservations, orders, lifecycle, metrics, logger } = options;
  // (sale, SKU) pairs some answer proved to exist; bounded by the sales there are.
  const knownItems = new Set<string>();

  app.post(
    '/v1/sales/:saleId/orders',
    {
      onRequest: auth.shopper,
      schema: {
        tags: ['storefront'],
        summary: 'Attempt to order an item of a flash sale',
        security: [{ bearer: [] }],
        params: SaleParams,
        headers: ReserveHeaders,
        body: ReserveBody,
        response: { 201: OrderBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody, 429: ErrorBody, 503: ErrorBody },
      },
    },
    async (request, reply) => {
      const { saleId } = request.params;
      const { sku, quantity } = request.body;
      const { userId } = principal(request);
      const reservation = await reservations.reserve({ saleId, sku, userId, quantity, idempotencyKey: request.headers['idempotency-key'] });
      observe(metrics, logger, knownItems, saleId, sku, reservation);
      switch (reservation.kind) {
        case 'accepted':
          return reply.code(201).header('location', `/v1/orders/${reservation.order.id}`).send(presentOrder(reservation.order));
        case 'replayed': {
          const order = (await orders.fromRedis(reservation.orderId)) ?? (await orders.find(reservation.orderId));
          if (!order) throw new Error(`idempotent replay names order ${reservation.orderId}, which cannot be found`);
          return reply.code(201).header('location', `/v1/orders/${order.id}`).header('idempotent-replayed', 'true').send(presentOrder(order));
        }
        case 'unacknowledged':
          reply.header('retry-after', NOT_DURABLE_RETRY_AFTER_SECONDS);
          return sendError(
            reply,
            'NOT_DURABLE',
            `Order ${reservation.orderId} was recorded, but only ${reservation.acknowledgedBy} replica(s) acknowledged it in time, so a failover ` +
              'could still lose it: it may or may not exist. Retry after Retry-After with the same Idempotency-Key: it is replayed, never made twice',
          );
        case 'refused':
          if (reservation.code !== 'RATE_LIMITED') return sendError(reply, reservation.code);
          reply.header('retry-after', RATE_LIMIT_RETRY_AFTER_SECONDS);
          return sendError(reply, 'RATE_LIMITED', 'Too many order attempts from this shopper on this item; retry later');
      }
    },
  );

  app.get(
    '/v1/orders/:orderId',
    {
      onRequest: auth.shopper,
      schema: { tags: ['storefront'], security: [{ bearer: [] }], params: OrderParams, response: { 200: OrderBody, 401: ErrorBody, 404: ErrorBody } },
    },
    async (request, reply) => {
      const caller = principal(request);
      const order = await orders.find(request.params.orderId);
      // Another user's order is indistinguishable from a missing one.
      if (!order || (order.userId !== caller.userId && !caller.admin)) return sendError(reply, 'ORDER_NOT_FOUND');
      return presentOrder(order);
    },
  );

  app.get(
    '/v1/users/me/orders',
    {
      onRequest: auth.shopper,
      schema: {
        tags: ['storefront'],
        security: [{ bearer: [] }],
        querystring: Type.Object({ saleId: Type.Optional(Identifier) }, { additionalProperties: false }),
        response: { 200: Type.Object({ orders: Type.Array(OrderBody) }), 401: ErrorBody },
      },
    },
    async (request) => {
      const list = await orders.listByUser(principal(request).userId, request.query.saleId);
      return { orders: list.map(presentOrder) };
    },
  );

  const ownerSchema = { tags: ['storefront'], security: [{ bearer: [] }], params: OrderParams };

  app.post(
    '/v1/orders/:orderId/payment',
    {
      onRequest: auth.shopper,
      schema: {
        ...ownerSchema,
        summary: "Record the payment provider's confirmation",
        body: PaymentBody,
        response: { 200: OrderBody, 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (request, reply) => {
      const outcome = await lifecycle.pay(request.params.orderId, principal(request).userId, request.body.paymentRef);
      const result = outcome.kind === 'refused' ? outcome.code.toLowerCase() : outcome.changed ? 'paid' : 'already_paid';
      metrics.paymentAttempts.inc({ result });
      return outcome.kind === 'refused' ? sendError(reply, outcome.code) : presentOrder(outcome.order);
    },
  );

  app.post(
    '/v1/orders/:orderId/cancel',
    {
      onRequest: auth.shopper,
      schema: { ...ownerSchema, summary: 'Cancel an unpaid order', response: { 200: OrderBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody } },
    },
    async (request, reply) => {
      const outcome = await lifecycle.cancel(request.params.orderId, principal(request).userId);
      return outcome.kind === 'refused' ? sendError(reply, outcome.code) : presentOrder(outcome.order);
    },
  );
};
