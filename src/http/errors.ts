// The catalogue of API error codes (stable, machine-readable) and the one error handler that
// shapes every failure as {statusCode, code, error, message}; 5xx bodies never carry internals.
import { STATUS_CODES } from 'node:http';
import createError from '@fastify/error';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { isRedisUnavailable } from '../redis/connection.ts';
import { SAFE_TEXT_PATTERN } from '../text.ts';

/** Seconds a client is told to wait out a Redis outage: about one failover's worth of retries. */
const REDIS_RETRY_AFTER_SECONDS = 2;

export const API_ERRORS = {
  VALIDATION_FAILED: [400, 'Request is invalid'],
  BAD_REQUEST: [400, 'The request is not well-formed HTTP'],
  UNAUTHORIZED: [401, 'A valid bearer token is required'],
  FORBIDDEN: [403, 'This route is for operators'],
  NOT_FOUND: [404, 'Route not found'],
  SALE_NOT_FOUND: [404, 'Sale not found'],
  ITEM_NOT_FOUND: [404, 'Item not found in this sale'],
  ORDER_NOT_FOUND: [404, 'Order not found'],
  METHOD_NOT_ALLOWED: [405, 'This route does not take this method; see the Allow header'],
  REQUEST_TIMEOUT: [408, 'The request took too long to arrive'],
  SALE_EXISTS: [409, 'A sale with this id already exists'],
  SALE_NOT_STARTED: [409, 'The sale has not started yet'],
  SALE_ENDED: [409, 'The sale has ended'],
  ITEM_DELISTED: [409, 'The item is not on sale'],
  SOLD_OUT: [409, 'The item is sold out'],
  INSUFFICIENT_STOCK: [409, 'Not enough stock left for this quantity'],
  PER_USER_LIMIT_EXCEEDED: [409, 'This would exceed the per-user limit for the item'],
  ORDER_EXPIRED: [409, 'The order expired before payment'],
  ORDER_CANCELLED: [409, 'The order was cancelled'],
  ORDER_ALREADY_PAID: [409, 'The order is already paid'],
  ORDER_REJECTED: [409, 'The order could not be honoured (sold twice after a data loss); it is void and will be compensated'],
  STOCK_LIMIT_EXCEEDED: [409, "The restock would take the item past its maximum total stock (1,000,000,000 units, and stock × unitPrice ≤ 9,007,199,254,740,991)"],
  PAYLOAD_TOO_LARGE: [413, 'Request body is larger than 16 KiB'],
  URI_TOO_LONG: [414, 'A path segment is longer than 100 characters'],
  UNSUPPORTED_MEDIA_TYPE: [415, 'Send application/json'],
  IDEMPOTENCY_KEY_REUSED: [422, 'This Idempotency-Key already made an order with a different body'],
  RATE_LIMITED: [429, 'Too many requests; retry later'],
  HEADERS_TOO_LARGE: [431, 'The request headers are too large'],
  INTERNAL: [500, 'Internal Server Error'],
  OVERLOADED: [503, 'The service is shedding load; retry later'],
  NOT_READY: [503, 'The service is not ready'],
  SALE_RECOVERING: [503, "The sale's live state is being rebuilt from the system of record; retry after Retry-After"],
  SHUTTING_DOWN: [503, 'This instance is shutting down; retry'],
  REDIS_UNAVAILABLE: [
    503,
    'The order store is briefly unavailable (failing over); the request may or may not have taken effect. ' +
      'Retry after Retry-After: an order retried with the same Idempotency-Key is replayed, never made twice',
  ],
  CLOSE_INCOMPLETE: [
    503,
    'The sale is closed, but not every stock shard could be reached to carry the close yet; retry the close (it keeps the first close time)',
  ],
  NOT_DURABLE: [
    503,
    'The order was recorded but not yet copied to enough Redis replicas, so a failover could lose it: it may or may not exist. ' +
      'Retry after Retry-After with the same Idempotency-Key: the order is replayed, never made twice',
  ],
} as const satisfies Record<string, readonly [number, string]>;

export type ApiErrorCode = keyof typeof API_ERRORS;

export interface ApiErrorBody {
  statusCode: number;
  code: ApiErrorCode;
  error: string;
  message: string;
}

export function apiErrorBody(code: ApiErrorCode, message?: string): ApiErrorBody {
  const [statusCode, defaultMessage] = API_ERRORS[code];
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message: message ?? defaultMessage };
}

/** Expected outcomes (sold out, not found…) are values: routes send them with this. */
export function sendError(reply: FastifyReply, code: ApiErrorCode, message?: string): FastifyReply {
  const body = apiErrorBody(code, message);
  return reply.code(body.statusCode).send(body);
}

/** Thrown from hooks (auth, shedding, draining) where a reply value cannot be returned. */
export const UnauthorizedError = createError('UNAUTHORIZED', API_ERRORS.UNAUTHORIZED[1], 401);
export const ForbiddenError = createError('FORBIDDEN', API_ERRORS.FORBIDDEN[1], 403);
export const OverloadedError = createError('OVERLOADED', API_ERRORS.OVERLOADED[1], 503);
export const ShuttingDownError = createError('SHUTTING_DOWN', API_ERRORS.SHUTTING_DOWN[1], 503);

// Fastify's own codes for client mistakes, mapped onto ours (with our message where theirs
// would name internals or nothing useful).
const FASTIFY_CODES: Record<string, readonly [ApiErrorCode, string?]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ['PAYLOAD_TOO_LARGE'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ['UNSUPPORTED_MEDIA_TYPE'],
  FST_ERR_CTP_EMPTY_JSON_BODY: ['VALIDATION_FAILED', 'body is empty; send a JSON object'],
  FST_ERR_CTP_INVALID_JSON_BODY: ['VALIDATION_FAILED', 'body is not valid JSON'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['VALIDATION_FAILED', 'headers.content-length does not match the body length'],
  FST_ERR_BAD_URL: ['BAD_REQUEST', 'The path is not valid percent-encoding'],
  FST_ERR_MAX_PARAM_LENGTH: ['URI_TOO_LONG'],
};

function isApiErrorCode(code: string | undefined): code is ApiErrorCode {
  return code !== undefined && Object.hasOwn(API_ERRORS, code);
}

/**
 * The one place a thrown error becomes a response. Used as Fastify's error handler and for the
 * errors Fastify raises before routing (frameworkErrors), so both answer alike.
 */
export function handleError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error.validation) {
    const first = error.validation[0];
    const field = validationField(error.validationContext, first?.instancePath, first?.params);
    return sendError(reply, 'VALIDATION_FAILED', `${field} ${validationProblem(first?.message, first?.params)}`);
  }
  const fastify = FASTIFY_CODES[error.code];
  if (fastify) return sendError(reply, fastify[0], fastify[1]);
  // JSON.parse and secure-json-parse (__proto__ keys) throw SyntaxError.
  if (error instanceof SyntaxError) return sendError(reply, 'VALIDATION_FAILED', 'body is not valid JSON');
  // Our own coded errors (auth, shedding, the rate limiter's body) keep their message.
  if (isApiErrorCode(error.code)) return sendError(reply, error.code, error.message);
  // Redis out of reach (a master failing over, a restart): an outage to wait out, not a bug.
  if (isRedisUnavailable(error)) {
    request.log.warn({ err: error }, 'Redis unavailable; answered 503');
    reply.header('retry-after', REDIS_RETRY_AFTER_SECONDS);
    return sendError(reply, 'REDIS_UNAVAILABLE');
  }
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    // A client error some plugin raises that the catalogue does not know yet: keep its status,
    // give it a code derived from the status, and log it so it gets a catalogue entry.
    request.log.warn({ err: error }, 'uncatalogued client error');
    const reason = STATUS_CODES[status] ?? 'Client Error';
    const code = reason.toUpperCase().replace(/[^A-Z0-9]+/g, '_');
    return reply.code(status).send({ statusCode: status, code, error: reason, message: error.message });
  }
  // 5xx, and an "error" with a status that is no error at all, is our bug: log it, show nothing.
  request.log.error({ err: error }, 'request failed');
  return sendError(reply, 'INTERNAL');
}

/** 404, or 405 with Allow when the path exists under other methods. */
function notFound(app: FastifyInstance, methods: ReadonlySet<string>) {
  return (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const path = request.url.split('?', 1)[0] ?? '/';
    const allowed = [...methods].filter((method) => app.findRoute({ method: method as HTTPMethods, url: path }) !== null).sort();
    // A route that matched its own method and still called notFound (a missing static file) is a 404.
    if (allowed.length > 0 && !allowed.includes(request.method)) {
      reply.header('allow', allowed.join(', '));
      return sendError(reply, 'METHOD_NOT_ALLOWED', `${request.method} is not allowed here; use ${allowed.join(', ')}`);
    }
    return sendError(reply, 'NOT_FOUND', `Route ${request.method} ${path} not found`);
  };
}

export function installErrorHandling(app: FastifyInstance): void {
  // The methods some route answers; registered first, so every route below is seen.
  const methods = new Set<string>();
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) methods.add(method);
  });
  app.setNotFoundHandler(notFound(app, methods));
  app.setErrorHandler(handleError);
}

/** Ajv's wording, except for the safe-text pattern, which is said in words rather than as a regex. */
function validationProblem(message: string | undefined, params: Record<string, unknown> | undefined): string {
  if (params?.pattern === SAFE_TEXT_PATTERN) return 'must not contain control characters or lone surrogates';
  return message ?? 'is invalid';
}

function validationField(
  context: string | undefined,
  instancePath: string | undefined,
  params: Record<string, unknown> | undefined,
): string {
  const where = context ?? 'body';
  const path = (instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
  const property = params?.additionalProperty ?? params?.missingProperty;
  const name = [path, typeof property === 'string' ? property : ''].filter(Boolean).join('.');
  return name ? `${where}.${name}` : where;
}
