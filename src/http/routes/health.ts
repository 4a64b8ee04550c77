// Liveness and readiness probes: ready means Redis and Postgres answer, the scripts are loaded,
// and the process is not shutting down (readiness fails first during a graceful exit).
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, boolean>>;
  /** Set while an operator's payment outage holds deadlines (no effect on readiness). */
  readonly paymentOutage?: { readonly state: 'active' | 'ending'; readonly startedAt: string };
}

export type ReadinessCheck = () => Promise<ReadinessReport>;

const HealthBody = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  checks: Type.Optional(Type.Record(Type.String(), Type.Boolean())),
  paymentOutage: Type.Optional(Type.Object({ state: Type.Union([Type.Literal('active'), Type.Literal('ending')]), startedAt: Type.String() })),
});

export const healthRoutes: FastifyPluginAsync<{ readiness: ReadinessCheck }> = async (app, { readiness }) => {
  app.get('/health/live', { schema: { tags: ['health'], response: { 200: HealthBody } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get('/health/ready', { schema: { tags: ['health'], response: { 200: HealthBody, 503: HealthBody } } }, async (_request, reply) => {
    const report = await readiness();
    return reply
      .code(report.ready ? 200 : 503)
      .send({ status: report.ready ? 'ok' : 'unavailable', checks: report.checks, ...(report.paymentOutage && { paymentOutage: report.paymentOutage }) });
  });
};
