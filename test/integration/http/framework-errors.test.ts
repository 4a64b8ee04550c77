// Statuses that Fastify, Node's HTTP parser or a plugin produce on their own, before any route
// code runs: each must still be the contract's error shape {statusCode, code, error, message},
// with `error` the reason phrase of its status, a stable `code`, an x-request-id and no stack.
// Checked through app.inject and, where the socket layer decides, over a raw TCP connection.
import { STATUS_CODES } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import Fastify from 'fastify';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installErrorHandling } from '../../../src/http/errors.ts';
import { startTestApi, testApi } from '../../support/api.ts';
import type { ErrorJson } from '../../support/api-json.ts';

const api = testApi();
let app: Awaited<ReturnType<typeof api.open>>['app'];
let tk: Awaited<ReturnType<typeof api.open>>['tk'];
let ctx: Awaited<ReturnType<typeof api.open>>['ctx'];
let port: number;
let saleId: string;

beforeAll(async () => {
  ({ app, tk, port, ctx } = await api.open());
  saleId = (await api.createSale([{ sku: 'a', stock: 5 }])).id;
});
afterAll(() => api.close());

interface Answer {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

/** The contract's error shape, exactly, with this status and code. */
function expectError(res: Answer, statusCode: number, code: string): ErrorJson {
  expect(res.statusCode, res.body).toBe(statusCode);
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  const body = JSON.parse(res.body) as ErrorJson;
  expect(Object.keys(body).sort()).toEqual(['code', 'error', 'message', 'statusCode']);
  expect(body).toMatchObject({ statusCode, code, error: STATUS_CODES[statusCode] });
  expect(body.message.length).toBeGreaterThan(0);
  expect(res.body, 'no stack trace').not.toMatch(/\n\s+at |node_modules|\.ts:\d+/);
  const id = res.headers['x-request-id'];
  expect(typeof id === 'string' && id.length > 0, `x-request-id on ${res.statusCode}`).toBe(true);
  return body;
}

const fromInject = (res: LightMyRequestResponse): Answer => ({ statusCode: res.statusCode, headers: res.headers, body: res.body });

/** Sends bytes as they are on a fresh socket and parses the one answer (the server may close). */
function raw(request: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const answer = parse(text);
      if (answer) {
        socket.destroy();
        resolve(answer);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`connection closed before a full answer: ${JSON.stringify(text)}`)));
    socket.write(request, 'latin1');
  });
}

function parse(text: string): Answer | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const body = text.slice(end + 4);
  if (body.length < Number(headers['content-length'] ?? 0)) return undefined;
  return { statusCode: Number(statusLine.split(' ')[1]), headers, body };
}

const long = 'x'.repeat(101);

describe('routing', () => {
  it.each([
    ['GET', `/v1/sales/${long}`],
    ['POST', `/v1/sales/${long}/orders`],
    ['GET', `/v1/orders/${long}`],
    ['POST', `/v1/admin/sales/${long}/close`],
  ] as const)('when a path parameter is over 100 characters (%s %s), then 414 URI_TOO_LONG', async (method, url) => {
    const res = await app.inject({ method, url, headers: { authorization: tk.admin() }, ...(method === 'POST' && { payload: {} }) });
    expectError(fromInject(res), 414, 'URI_TOO_LONG');
  });

  it('when a path parameter is not valid percent-encoding, then 400 BAD_REQUEST', async () => {
    expectError(fromInject(await app.inject({ method: 'GET', url: '/v1/sales/%E0%A4%A' })), 400, 'BAD_REQUEST');
  });

  it('when no route has the path, then 404 NOT_FOUND, for every method', async () => {
    for (const method of ['GET', 'POST', 'DELETE'] as const) {
      expectError(fromInject(await app.inject({ method, url: '/v1/nothing-here' })), 404, 'NOT_FOUND');
    }
  });

  it.each([
    ['DELETE', `/v1/sales/d11`, 'GET, HEAD'],
    ['PUT', `/v1/sales/d11/orders`, 'POST'],
    ['GET', `/v1/sales/d11/orders`, 'POST'],
    ['PATCH', '/v1/admin/sales', 'GET, HEAD, POST'],
    ['POST', '/health/live', 'GET, HEAD'],
    ['GET', '/v1/orders/some-order/payment', 'POST'],
  ] as const)('when %s is sent to a known path (%s), then 405 METHOD_NOT_ALLOWED with Allow: %s', async (method, url, allow) => {
    const res = await app.inject({ method, url });
    expectError(fromInject(res), 405, 'METHOD_NOT_ALLOWED');
    expect(res.headers.allow).toBe(allow);
  });

  it('when a known path is asked with its own method but the resource is missing, then still 404 (not 405)', async () => {
    expectError(fromInject(await app.inject({ method: 'GET', url: '/docs/static/no-such-file.js' })), 404, 'NOT_FOUND');
  });
});

describe('bodies', () => {
  const post = (headers: Record<string, string>, payload: string) =>
    app.inject({ method: 'POST', url: `/v1/sales/${saleId}/orders`, headers: { authorization: tk.shopper('body-user'), ...headers }, payload });

  it('when the body is over 16 KiB, then 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await post({ 'content-type': 'application/json' }, JSON.stringify({ sku: 'a', quantity: 1, pad: 'x'.repeat(16 * 1024) }));
    expectError(fromInject(res), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('when the content type is not JSON, then 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    expectError(fromInject(await post({ 'content-type': 'text/csv' }, 'sku,quantity\na,1')), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('when the JSON is malformed or empty, then 400 VALIDATION_FAILED', async () => {
    expectError(fromInject(await post({ 'content-type': 'application/json' }, '{"sku": "a",')), 400, 'VALIDATION_FAILED');
    expectError(fromInject(await post({ 'content-type': 'application/json' }, '')), 400, 'VALIDATION_FAILED');
  });

  it('when the JSON carries a __proto__ key, then 400 VALIDATION_FAILED', async () => {
    const res = await post({ 'content-type': 'application/json' }, '{"sku":"a","quantity":1,"__proto__":{"x":1}}');
    expectError(fromInject(res), 400, 'VALIDATION_FAILED');
  });

  it('when content-length does not match the body, then 400 VALIDATION_FAILED naming the header', async () => {
    const res = await post({ 'content-type': 'application/json', 'content-length': '3' }, '{"sku":"a","quantity":1}');
    const body = expectError(fromInject(res), 400, 'VALIDATION_FAILED');
    expect(body.message).toMatch(/content-length/);
  });
});

describe('over a real socket', () => {
  it('when a declared body is over 16 KiB, then 413 PAYLOAD_TOO_LARGE before the body is read', async () => {
    const res = await raw(
      `POST /v1/sales/${saleId}/orders HTTP/1.1\r\nHost: x\r\nAuthorization: ${tk.shopper('raw')}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`,
    );
    expectError(res, 413, 'PAYLOAD_TOO_LARGE');
  });

  it('when a path parameter is over 100 characters, then 414 URI_TOO_LONG', async () => {
    expectError(await raw(`GET /v1/sales/${long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`), 414, 'URI_TOO_LONG');
  });

  it('when the content-length header is not a number, then 400 BAD_REQUEST', async () => {
    const res = await raw(`POST /v1/sales/${saleId}/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}`);
    expectError(res, 400, 'BAD_REQUEST');
  });

  it('when the request line is not HTTP, then 400 BAD_REQUEST', async () => {
    expectError(await raw('HELLO THERE\r\n\r\n'), 400, 'BAD_REQUEST');
  });

  it('when the headers are larger than the server accepts, then 431 HEADERS_TOO_LARGE', async () => {
    const res = await raw(`GET /health/live HTTP/1.1\r\nHost: x\r\nX-Padding: ${'y'.repeat(20_000)}\r\n\r\n`);
    expectError(res, 431, 'HEADERS_TOO_LARGE');
  });
});

describe('authentication', () => {
  it('declares request.principal as a request decorator (not an ad-hoc property)', () => {
    expect(app.hasRequestDecorator('principal')).toBe(true);
  });

  it('when the token is missing, then 401 UNAUTHORIZED; a shopper on an operator route, 403 FORBIDDEN', async () => {
    expectError(fromInject(await app.inject({ method: 'GET', url: '/v1/users/me/orders' })), 401, 'UNAUTHORIZED');
    const res = await app.inject({ method: 'GET', url: '/v1/admin/sales', headers: { authorization: tk.shopper('u') } });
    expectError(fromInject(res), 403, 'FORBIDDEN');
  });
});

describe('rate limits (@fastify/rate-limit)', () => {
  const limitedApp = api.apiWith({ RATE_LIMIT_IP_PER_SEC: '1', RATE_LIMIT_USER_PER_SEC: '1' });

  it('when an address exceeds its rate, then 429 RATE_LIMITED with Retry-After', async () => {
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await limitedApp().inject({ method: 'GET', url: `/v1/sales/${saleId}` }));
    const refused = answers.find((res) => res.statusCode === 429);
    expect(refused, 'one of 3 requests within a second is refused').toBeDefined();
    expectError(fromInject(refused!), 429, 'RATE_LIMITED');
    expect(Number(refused!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });
});

describe('shutting down', () => {
  it('when a request arrives on an open connection while the server drains, then 503 SHUTTING_DOWN', async () => {
    const closing = await startTestApi(ctx);
    const closingPort = (closing.app!.server.address() as AddressInfo).port;
    const socket = connect(closingPort, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    // A request whose body is still on its way keeps the connection busy, so close() waits for it.
    socket.write(`POST /v1/sales/${saleId}/orders HTTP/1.1\r\nHost: x\r\nAuthorization: ${tk.shopper('drain')}\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{"sku":`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stopped = closing.stop();
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The rest of the body, and a second request pipelined behind it.
    socket.write(`"a","quantity":1}GET /v1/sales/${saleId} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await stopped;
    socket.destroy();
    const second = text.slice(text.indexOf('HTTP/1.1', 1));
    expect(text.indexOf('HTTP/1.1', 1), text).toBeGreaterThan(0);
    expectError(parse(second)!, 503, 'SHUTTING_DOWN');
  });
});

describe('the error handler itself', () => {
  it('when a handler throws an unexpected error, then 500 INTERNAL without its message or stack', async () => {
    // A bare app with the real error handling: the service has no route that fails on purpose.
    const bare = Fastify({ logger: false });
    installErrorHandling(bare);
    bare.get('/boom', async () => {
      throw new Error('secret internals at /srv/app/src/thing.ts:12');
    });
    bare.get('/odd-status', async () => {
      throw Object.assign(new Error('odd'), { statusCode: 302 });
    });
    try {
      const res = await bare.inject({ method: 'GET', url: '/boom', headers: { 'x-request-id': 'r-1' } });
      expect(res.body).not.toMatch(/secret|thing\.ts/);
      expect(res.json()).toEqual({ statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: 'Internal Server Error' });
      // An "error" with a non-error status is a bug of ours, not a redirect.
      expect((await bare.inject({ method: 'GET', url: '/odd-status' })).statusCode).toBe(500);
    } finally {
      await bare.close();
    }
  });
});
