// Errors answered outside the request lifecycle, in the contract's shape all the same: the
// router's (a path that is not valid percent-encoding, a parameter over maxParamLength), which
// skip the onRequest hooks, and Node's HTTP parser's (malformed request, headers too large,
// timeout), which have no request at all. Fastify's defaults for both send bodies without `code`.
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { apiErrorBody, handleError, type ApiErrorCode } from './errors.ts';

/** Fastify's `frameworkErrors` option: routing failures go through the one error handler. */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-request-id', request.id);
  handleError(error, request, reply);
}

const PARSER_ERRORS: Record<string, ApiErrorCode> = {
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
};

/** Fastify's `clientErrorHandler` option: Node could not parse the request; answer and hang up. */
export function clientErrorHandler(this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket): void {
  // A reset connection has no one left to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // Mostly scanners and broken proxies: not worth more than a trace line.
  this.log.trace({ err: error }, 'malformed HTTP request');
  if (socket.writable) {
    const body = apiErrorBody(PARSER_ERRORS[error.code ?? ''] ?? 'BAD_REQUEST');
    const json = JSON.stringify(body);
    socket.write(
      `HTTP/1.1 ${body.statusCode} ${body.error}\r\n` +
        'content-type: application/json; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(json)}\r\n` +
        `x-request-id: ${randomUUID()}\r\n` +
        'connection: close\r\n\r\n' +
        json,
    );
  }
  socket.destroy(error);
}
