// What a cluster's processes and their primary say to each other over the IPC channel: "I am ready", and
// the primary asking each process for its metrics so that /metrics on METRICS_PORT answers for all of them.
// The aggregation is prom-client's (AggregatorRegistry.aggregate: counters and histograms summed, each
// gauge by its own aggregator); the request is our own, so the primary asks only processes that are ready
// and a process that does not answer in time is left out rather than failing the scrape.
import type { Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { MetricsSource } from '../metrics.ts';

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

const READY = 'flashsale:ready';
const METRICS_REQUEST = 'flashsale:metrics-request';
const METRICS_REPLY = 'flashsale:metrics-reply';

interface Message {
  readonly type?: unknown;
  readonly id?: unknown;
  readonly metrics?: unknown;
}

const asMessage = (value: unknown): Message => (typeof value === 'object' && value !== null ? (value as Message) : {});

export const isReady = (message: unknown): boolean => asMessage(message).type === READY;

/** In a cluster's process, once it serves: tells the primary, and answers its requests for metrics. */
export function joinCluster(registry: Registry): void {
  process.on('message', (raw: unknown) => {
    const message = asMessage(raw);
    if (message.type !== METRICS_REQUEST) return;
    void registry.getMetricsAsJSON().then(
      (metrics) => process.send?.({ type: METRICS_REPLY, id: message.id, metrics }),
      () => process.send?.({ type: METRICS_REPLY, id: message.id, metrics: [] }),
    );
  });
  process.send?.({ type: READY });
}

let nextRequestId = 0;

function requestMetrics(worker: Worker, timeoutMs: number): Promise<MetricsJson | undefined> {
  const id = nextRequestId++;
  return new Promise((resolve) => {
    const onMessage = (raw: unknown) => {
      const message = asMessage(raw);
      if (message.type !== METRICS_REPLY || message.id !== id) return;
      finish(Array.isArray(message.metrics) ? (message.metrics as MetricsJson) : undefined);
    };
    const finish = (metrics: MetricsJson | undefined) => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
      resolve(metrics);
    };
    const onExit = () => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    try {
      worker.send({ type: METRICS_REQUEST, id });
    } catch {
      finish(undefined);
    }
  });
}

/** In the primary: the metrics of every process `workers()` names, aggregated at each scrape. */
export function clusterMetricsSource(workers: () => readonly Worker[], timeoutMs: number): MetricsSource {
  return {
    contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE,
    async metrics() {
      const replies = await Promise.all(workers().map((worker) => requestMetrics(worker, timeoutMs)));
      return AggregatorRegistry.aggregate(replies.filter((reply) => reply !== undefined)).metrics();
    },
  };
}
