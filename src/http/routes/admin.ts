// Operator routes: create, list and close sales; delist, relist and restock items.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { SaleReporter } from '../../sales/report.ts';
import { tagHex } from '../../stock/keys.ts';
import { MAX_ITEM_VALUE } from '../../sales/sale.ts';
import type { SalesService } from '../../sales/sales-service.ts';
import type { Authenticator } from '../auth.ts';
import { sendError } from '../errors.ts';
import { iso, presentSale } from '../present.ts';
import { CreateSaleBody, ErrorBody, Timestamp, ItemParams, ItemSwitchBody, RestockBody, SaleParams, SaleSummary, SaleView, type CreateSaleBodyType } from '../schemas.ts';

const DEFAULT_PAYMENT_WINDOW_SECONDS = 900;

/** Rules JSON Schema cannot state; undefined when the body is sound. */
function saleBodyProblem(body: CreateSaleBodyType): string | undefined {
  // The date-time format admits a leap second (23:59:60), which JavaScript cannot represent.
  for (const field of ['startsAt', 'endsAt'] as const) {
    if (Number.isNaN(Date.parse(body[field]))) return `body.${field} is not a representable time (leap seconds are not)`;
  }
  if (Date.parse(body.endsAt) <= Date.parse(body.startsAt)) return 'body.endsAt must be after body.startsAt';
  const seen = new Set<string>();
  for (const [index, item] of body.items.entries()) {
    if (seen.has(item.sku)) return `body.items.${index}.sku duplicates SKU ${item.sku}`;
    seen.add(item.sku);
    // Postgres keeps a percentage to two decimals (numeric(5,2)); Redis would keep more, and a
    // sale rebuilt from Postgres would then delist at another level.
    const percent = item.lowStock && 'percent' in item.lowStock ? item.lowStock.percent : undefined;
    if (percent !== undefined && Math.round(percent * 100) / 100 !== percent) {
      return `body.items.${index}.lowStock.percent must have at most two decimals`;
    }
    // The item's revenue (stock × unitPrice at most) must stay an exact JavaScript number.
    if (item.stock * item.unitPrice > MAX_ITEM_VALUE) {
      return `body.items.${index} stock × unitPrice must not exceed ${MAX_ITEM_VALUE} (Number.MAX_SAFE_INTEGER)`;
    }
  }
  return undefined;
}

const adminSchema = { tags: ['operator'], security: [{ bearer: [] }] };
const ITEM_RESPONSES = { 200: ItemSwitchBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody };

const Ms = Type.Union([Timestamp, Type.Null()]);
const ReportBody = Type.Object({
  saleId: Type.String(),
  status: Type.String(),
  ordersAccepted: Type.Integer(),
  ordersPersisted: Type.Integer(),
  persistLagSeconds: Type.Number(),
  ordersDeadLettered: Type.Integer(),
  persistFailedBatches: Type.Integer(),
  items: Type.Array(
    Type.Object({
      sku: Type.String(),
      state: Type.String(),
      initialStock: Type.Integer(),
      restocked: Type.Integer(),
      available: Type.Integer(),
      reserved: Type.Integer(),
      paid: Type.Integer(),
      cancelled: Type.Integer(),
      expired: Type.Integer(),
      revenue: Type.Integer(),
      soldOutAt: Ms,
      delistedAt: Ms,
      // The item's stock shards: operators see them here only.
      shards: Type.Array(
        Type.Object({
          k: Type.Integer(),
          tag: Type.String({ description: "the shard's hash tag T as 8 hex digits (the last 8 of its orders' ids)" }),
          available: Type.Integer(),
          outPending: Type.Integer(),
          ordersAccepted: Type.Integer(),
          liveUsers: Type.Integer(),
        }),
      ),
    }),
  ),
  ordersRejectedOversell: Type.Integer(),
  rejectedOversell: Type.Array(
    Type.Object({
      orderId: Type.String(),
      userId: Type.String(),
      sku: Type.String(),
      quantity: Type.Integer(),
      amount: Type.Integer(),
      createdAt: Timestamp,
      rejectedAt: Timestamp,
      paymentRef: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
});

export interface AdminRouteOptions {
  readonly auth: Authenticator;
  readonly sales: SalesService;
  readonly reporter: SaleReporter;
}

export const adminRoutes: FastifyPluginAsyncTypebox<AdminRouteOptions> = async (app, { auth, sales, reporter }) => {
  app.addHook('onRequest', auth.admin);

  app.post(
    '/v1/admin/sales',
    // A sale of 1,000 items is ~450 KB; the 16 KiB limit is for the storefront's bodies.
    { bodyLimit: 1024 * 1024, schema: { ...adminSchema, body: CreateSaleBody, response: { 201: SaleView, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 409: ErrorBody } } },
    async (request, reply) => {
      const body = request.body;
      const problem = saleBodyProblem(body);
      if (problem) return sendError(reply, 'VALIDATION_FAILED', problem);
      const created = await sales.create({
        id: body.id,
        name: body.name,
        startsAt: Date.parse(body.startsAt),
        endsAt: Date.parse(body.endsAt),
        currency: body.currency,
        paymentWindowSeconds: body.paymentWindowSeconds ?? DEFAULT_PAYMENT_WINDOW_SECONDS,
        items: body.items,
      });
      if (created === 'SALE_EXISTS') return sendError(reply, 'SALE_EXISTS');
      return reply.code(201).send(presentSale(created));
    },
  );

  app.get(
    '/v1/admin/sales',
    { schema: { ...adminSchema, response: { 200: Type.Object({ sales: Type.Array(SaleSummary) }), 401: ErrorBody, 403: ErrorBody } } },
    async () => ({
      sales: (await sales.list()).map((sale) => ({ id: sale.id, name: sale.name, status: sale.status, startsAt: iso(sale.startsAt), endsAt: iso(sale.endsAt) })),
    }),
  );

  app.post(
    '/v1/admin/sales/:saleId/close',
    { schema: { ...adminSchema, params: SaleParams, response: { 200: SaleView, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 503: ErrorBody } } },
    async (request, reply) => {
      const result = await sales.close(request.params.saleId);
      return typeof result === 'string' ? sendError(reply, result) : presentSale(result);
    },
  );

  const switchRoute = (action: 'delist' | 'relist') =>
    app.post(
      `/v1/admin/sales/:saleId/items/:sku/${action}`,
      { schema: { ...adminSchema, params: ItemParams, response: ITEM_RESPONSES } },
      async (request, reply) => {
        const { saleId, sku } = request.params;
        const result = await sales[action](saleId, sku);
        return typeof result === 'string' ? sendError(reply, result) : { saleId, sku, available: result.available, state: result.state };
      },
    );
  switchRoute('delist');
  switchRoute('relist');

  app.post(
    '/v1/admin/sales/:saleId/items/:sku/restock',
    { schema: { ...adminSchema, params: ItemParams, body: RestockBody, response: { ...ITEM_RESPONSES, 400: ErrorBody, 409: ErrorBody } } },
    async (request, reply) => {
      const { saleId, sku } = request.params;
      const result = await sales.restock(saleId, sku, request.body.quantity);
      return typeof result === 'string' ? sendError(reply, result) : { saleId, sku, available: result.available, state: result.state };
    },
  );

  app.get(
    '/v1/admin/sales/:saleId/report',
    { schema: { ...adminSchema, params: SaleParams, response: { 200: ReportBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody } } },
    async (request, reply) => {
      const report = await reporter.report(request.params.saleId);
      if (!report) return sendError(reply, 'SALE_NOT_FOUND');
      const optionalIso = (ms: number | null) => (ms === null ? null : iso(ms));
      return {
        ...report,
        items: report.items.map((item) => ({
          ...item,
          soldOutAt: optionalIso(item.soldOutAt),
          delistedAt: optionalIso(item.delistedAt),
          shards: item.shards.map((shard) => ({ ...shard, tag: tagHex(shard.tag) })),
        })),
        rejectedOversell: report.rejectedOversell.map((order) => ({ ...order, createdAt: iso(order.createdAt), rejectedAt: iso(order.rejectedAt) })),
      };
    },
  );
};
