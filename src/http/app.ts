// Builds the Fastify app from its dependencies; it never listens (src/main.ts does, tests inject).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import type { OrderLifecycle } from '../orders/lifecycle.ts';
import type { OrderStore } from '../orders/order-store.ts';
import type { PaymentOutage } from '../orders/payment-outage.ts';
import type { Reservations } from '../orders/reservations.ts';
import type { SaleReporter } from '../sales/report.ts';
import type { SalesService } from '../sales/sales-service.ts';
import { createAuthenticator, decoratePrincipal } from './auth.ts';
import { clientErrorHandler, frameworkErrors } from './edge-errors.ts';
import { OverloadedError, ShuttingDownError, apiErrorBody, installErrorHandling } from './errors.ts';
import { adminRoutes } from './routes/admin.ts';
import { healthRoutes, type ReadinessCheck } from './routes/health.ts';
import { orderRoutes } from './routes/orders.ts';
import { paymentAdminRoutes } from './routes/payments-admin.ts';
import { saleRoutes } from './routes/sales.ts';
import { installRecoveringAnswers, type RecoveringSales } from '../recovery/storefront.ts';

export interface AppDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly readiness: ReadinessCheck;
  readonly sales: SalesService;
  readonly reservations: Reservations;
  readonly orders: OrderStore;
  readonly lifecycle: OrderLifecycle;
  readonly reporter: SaleReporter;
  readonly paymentOutage: PaymentOutage;
  /** Lost sales being rebuilt (src/recovery/): their storefront answers 503 SALE_RECOVERING. */
  readonly recovery?: RecoveringSales | undefined;
}

export type App = FastifyInstance<Server, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

const BODY_LIMIT_BYTES = 16 * 1024;
// Echo a caller's request id only when it is a sane token; otherwise mint one.
const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const RETRY_AFTER_SECONDS = 1;
const IP_LIMIT_TRACKED_ADDRESSES = 50_000;

export async function buildApp(deps: AppDeps): Promise<App> {
  const { config, metrics } = deps;
  const loggerInstance: FastifyBaseLogger = deps.logger;
  const app: App = Fastify({
    loggerInstance,
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: config.trustProxy ?? false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    },
    // Bodies are taken as sent: "1" is not a quantity, unknown properties are refused.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    // Errors raised before routing or by Node's parser, in the contract's shape (edge-errors.ts).
    frameworkErrors,
    clientErrorHandler,
    // Fastify's own 503 while closing has no `code`: the onRequest hook below answers instead.
    return503OnClosing: false,
    // Per-request log lines would cost more than the reservation itself at rush rates; the
    // http_request_duration_seconds histogram counts every request, errors are logged.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
  }).withTypeProvider<TypeBoxTypeProvider>();

  // JSON only: a text/plain body is refused (415), not parsed and then judged invalid.
  app.removeContentTypeParser('text/plain');
  installErrorHandling(app);
  decoratePrincipal(app);
  if (deps.recovery) installRecoveringAnswers(app, deps.recovery);

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // Requests still arriving on open connections while the server drains: the caller retries
    // elsewhere (Fastify already sends connection: close once closing).
    if (closing) throw new ShuttingDownError();
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: reply.statusCode },
      reply.elapsedTime / 1000,
    );
  });

  // Shed storefront load before any work (auth, Redis) when the event loop falls behind. Probes
  // and operators are never shed: closing or delisting is what an overloaded sale may need most.
  await app.register(underPressure, {
    maxEventLoopDelay: config.shedEventLoopDelayMs,
    // A rush turns in well under a second: sample every 100 ms rather than the default second.
    sampleInterval: 100,
    retryAfter: RETRY_AFTER_SECONDS,
    // A rejected promise reaches the error handler, which answers 503 OVERLOADED.
    pressureHandler: async (request, reply) => {
      if (request.url.startsWith('/health/') || request.url.startsWith('/v1/admin/')) return;
      reply.header('retry-after', RETRY_AFTER_SECONDS);
      throw new OverloadedError();
    },
  });

  // The optional per-IP guard counts in this process's memory (a bounded LRU), not in Redis: a
  // Redis counter would add a round trip to every request, which is what this guard is meant to
  // spare. So the limit holds per API process (P processes let an address through P times as
  // often) — enough for a coarse flood guard. The shopper's own attempt limit is exact across
  // processes: reserveOrder counts it in the same round trip as the decision.
  if (config.rateLimit.ipPerSecond > 0) {
    await app.register(rateLimit, {
      max: config.rateLimit.ipPerSecond,
      timeWindow: 1_000,
      cache: IP_LIMIT_TRACKED_ADDRESSES,
      keyGenerator: (request) => request.ip,
      allowList: (request) => request.url.startsWith('/health/'),
      errorResponseBuilder: () => apiErrorBody('RATE_LIMITED', 'Too many requests from this address; retry later'),
    });
  }

  await app.register(swagger, {
    openapi: {
      info: { title: 'Flash-sale order service', version: '1.0.0' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  const auth = createAuthenticator(config.jwtSecret);
  await app.register(healthRoutes, { readiness: deps.readiness });
  await app.register(saleRoutes, { sales: deps.sales });
  await app.register(orderRoutes, {
    auth,
    reservations: deps.reservations,
    orders: deps.orders,
    lifecycle: deps.lifecycle,
    metrics,
    logger: deps.logger,
  });
  await app.register(adminRoutes, { auth, sales: deps.sales, reporter: deps.reporter });
  await app.register(paymentAdminRoutes, { auth, outage: deps.paymentOutage });
  return app;
}
