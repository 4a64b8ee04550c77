// Liveness and readiness probes: ready means Redis and Postgres answer, the scripts are loaded,
// and the process is not shutting down (readiness fails first during a graceful exit).
import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, boolean>>;
}

export type ReadinessCheck = () => Promise<ReadinessReport>;

const HealthBody = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  checks: Type.Optional(Type.Record(Type.String(), Type.Boolean())),
});

export const healthRoutes: FastifyPluginAsync<{ readiness: ReadinessCheck }> = async (app, { readiness }) => {
  app.get('/health/live', { schema: { tags: ['health'], response: { 200: HealthBody } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get('/health/ready', { schema: { tags: ['health'], response: { 200: HealthBody, 503: HealthBody } } }, async (_request, reply) => {
    const report = await readiness();
    return reply.code(report.ready ? 200 : 503).send({ status: report.ready ? 'ok' : 'unavailable', checks: report.checks });
  });
};
