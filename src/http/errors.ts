// The catalogue of API error codes (stable, machine-readable) and the one error handler that
// shapes every failure as {statusCode, code, error, message}; 5xx bodies never carry internals.
import { STATUS_CODES } from 'node:http';
import createError from '@fastify/error';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { SAFE_TEXT_PATTERN } from '../text.ts';

export const API_ERRORS = {
  VALIDATION_FAILED: [400, 'Request is invalid'],
  UNAUTHORIZED: [401, 'A valid bearer token is required'],
  FORBIDDEN: [403, 'This route is for operators'],
  NOT_FOUND: [404, 'Route not found'],
  SALE_NOT_FOUND: [404, 'Sale not found'],
  ITEM_NOT_FOUND: [404, 'Item not found in this sale'],
  ORDER_NOT_FOUND: [404, 'Order not found'],
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
  STOCK_LIMIT_EXCEEDED: [409, "The restock would take the item past its maximum total stock (1,000,000,000 units, and stock × unitPrice ≤ 9,007,199,254,740,991)"],
  PAYLOAD_TOO_LARGE: [413, 'Request body is larger than 16 KiB'],
  UNSUPPORTED_MEDIA_TYPE: [415, 'Send application/json'],
  IDEMPOTENCY_KEY_REUSED: [422, 'This Idempotency-Key already made an order with a different body'],
  RATE_LIMITED: [429, 'Too many requests; retry later'],
  INTERNAL: [500, 'Internal Server Error'],
  OVERLOADED: [503, 'The service is shedding load; retry later'],
  NOT_READY: [503, 'The service is not ready'],
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

/** Thrown from hooks (auth) where a reply value cannot be returned. */
export const UnauthorizedError = createError('UNAUTHORIZED', API_ERRORS.UNAUTHORIZED[1], 401);
export const ForbiddenError = createError('FORBIDDEN', API_ERRORS.FORBIDDEN[1], 403);
export const OverloadedError = createError('OVERLOADED', API_ERRORS.OVERLOADED[1], 503);

// Fastify's own codes for client mistakes, mapped onto ours.
const FASTIFY_CODES: Record<string, ApiErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
};

function isApiErrorCode(code: string | undefined): code is ApiErrorCode {
  return code !== undefined && Object.hasOwn(API_ERRORS, code);
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) => sendError(reply, 'NOT_FOUND', `Route ${request.method} ${request.url} not found`));

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      const first = error.validation[0];
      const field = validationField(error.validationContext, first?.instancePath, first?.params);
      return sendError(reply, 'VALIDATION_FAILED', `${field} ${validationProblem(first?.message, first?.params)}`);
    }
    if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError) {
      return sendError(reply, 'VALIDATION_FAILED', 'body is not valid JSON');
    }
    const mapped = FASTIFY_CODES[error.code] ?? (isApiErrorCode(error.code) ? error.code : undefined);
    // Our own coded errors keep their message; Fastify's get ours.
    if (mapped) return sendError(reply, mapped, mapped === error.code ? error.message : undefined);
    const status = error.statusCode ?? 500;
    if (status < 500) {
      // Any other client error Fastify raises: keep its status, give it a stable code.
      const body = { statusCode: status, code: 'BAD_REQUEST', error: STATUS_CODES[status] ?? 'Error', message: error.message };
      return reply.code(status).send(body);
    }
    request.log.error({ err: error }, 'request failed');
    return sendError(reply, 'INTERNAL');
  });
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
