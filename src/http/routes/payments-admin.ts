// The operator's payment-outage switch (docs/api.md): while on, payment deadlines stop running;
// turning it off moves the deadlines that fell during the outage on by its length, then expiry
// resumes. Both directions are idempotent, so a retried request is harmless.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { OutageStatus, PaymentOutage } from '../../orders/payment-outage.ts';
import type { Authenticator } from '../auth.ts';
import { iso } from '../present.ts';
import { ErrorBody, Timestamp } from '../schemas.ts';

const OutageBody = Type.Object({
  /** true while payments are out (deadlines held), false once they are back (or being moved back). */
  active: Type.Boolean(),
  state: Type.Union([Type.Literal('none'), Type.Literal('active'), Type.Literal('ending')]),
  startedAt: Type.Union([Timestamp, Type.Null()]),
  endedAt: Type.Union([Timestamp, Type.Null()]),
  /** Only in the answer to turning it off: pending orders whose deadline this request moved. */
  stretchedOrders: Type.Optional(Type.Integer()),
});

const OutageSwitch = Type.Object({ active: Type.Boolean() }, { additionalProperties: false });

function present(status: OutageStatus, stretchedOrders?: number) {
  return {
    active: status.state === 'active',
    state: status.state,
    startedAt: status.startedAt === undefined ? null : iso(status.startedAt),
    endedAt: status.endedAt === undefined ? null : iso(status.endedAt),
    ...(stretchedOrders !== undefined && { stretchedOrders }),
  };
}

const schema = { tags: ['operator'], security: [{ bearer: [] }] };

export const paymentAdminRoutes: FastifyPluginAsyncTypebox<{ auth: Authenticator; outage: PaymentOutage }> = async (app, { auth, outage }) => {
  app.addHook('onRequest', auth.admin);

  app.get('/v1/admin/payments/outage', { schema: { ...schema, response: { 200: OutageBody, 401: ErrorBody, 403: ErrorBody } } }, async () =>
    present(await outage.status()),
  );

  app.post(
    '/v1/admin/payments/outage',
    { schema: { ...schema, body: OutageSwitch, response: { 200: OutageBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody } } },
    async (request) => {
      if (request.body.active) return present(await outage.start());
      const ended = await outage.end();
      // The outage is over once its deadlines are moved: what is left to report is what it was.
      return { ...present(ended), active: false, state: 'none' as const, stretchedOrders: ended.stretched };
    },
  );
};
