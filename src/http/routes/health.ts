// Liveness and readiness probes: ready means Redis and Postgres answer, the scripts are loaded,
// and the process is not shutting down (readiness fails first during a graceful exit); a ready
// instance with a sale being rebuilt says `degraded` and names the sale.
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, boolean>>;
  /** Set while an operator's payment outage holds deadlines (no effect on readiness). */
  readonly paymentOutage?: { readonly state: 'active' | 'ending'; readonly startedAt: string };
  /** Live sales whose Redis state is lost and being rebuilt (src/recovery/): the instance still serves the others. */
  readonly degraded?: readonly { readonly saleId: string; readonly since: string }[];
}

export type ReadinessCheck = () => Promise<ReadinessReport>;

const HealthBody = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('unavailable')]),
  checks: Type.Optional(Type.Record(Type.String(), Type.Boolean())),
  paymentOutage: Type.Optional(Type.Object({ state: Type.Union([Type.Literal('active'), Type.Literal('ending')]), startedAt: Type.String() })),
  degraded: Type.Optional(Type.Array(Type.Object({ saleId: Type.String(), since: Type.String() }))),
});

export const healthRoutes: FastifyPluginAsync<{ readiness: ReadinessCheck }> = async (app, { readiness }) => {
  app.get('/health/live', { schema: { tags: ['health'], response: { 200: HealthBody } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get('/health/ready', { schema: { tags: ['health'], response: { 200: HealthBody, 503: HealthBody } } }, async (_request, reply) => {
    const report = await readiness();
    // A sale being rebuilt degrades the instance, it does not take it out: every other sale still sells.
    const degraded = report.degraded ?? [];
    const status = !report.ready ? 'unavailable' : degraded.length > 0 ? 'degraded' : 'ok';
    return reply.code(report.ready ? 200 : 503).send({
      status,
      checks: report.checks,
      ...(degraded.length > 0 && { degraded }),
      ...(report.paymentOutage && { paymentOutage: report.paymentOutage }),
    });
  });
};
