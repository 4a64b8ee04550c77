// Public storefront route: a sale with its items' availability (cached up to 1 s).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { SalesService } from '../../sales/sales-service.ts';
import { sendError } from '../errors.ts';
import { presentSale } from '../present.ts';
import { ErrorBody, SaleParams, SaleView } from '../schemas.ts';

export const saleRoutes: FastifyPluginAsyncTypebox<{ sales: SalesService }> = async (app, { sales }) => {
  app.get(
    '/v1/sales/:saleId',
    { schema: { tags: ['storefront'], params: SaleParams, response: { 200: SaleView, 404: ErrorBody } } },
    async (request, reply) => {
      const view = await sales.view(request.params.saleId);
      if (!view) return sendError(reply, 'SALE_NOT_FOUND');
      return presentSale(view);
    },
  );
};
