// The prom-client registry and the service's metrics, plus the internal listener that serves them.
// Names are flashsale_* in seconds and _total; labels never carry user or order ids.
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { RESERVE_REFUSALS } from './stock/scripts/refusals.ts';

/** Every result a reservation can have, as the `result` label spells it. */
export const RESERVATION_RESULTS = ['ok', 'replayed', ...RESERVE_REFUSALS.map((code) => code.toLowerCase())];

// Sub-millisecond buckets: a reservation answered from memory takes ~100 µs.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export const PAYMENT_RESULTS = ['paid', 'already_paid', 'order_not_found', 'order_already_paid', 'order_cancelled', 'order_expired', 'order_rejected'];

/**
 * `process` names this process when it is one of a cluster's (src/cluster/): its process metrics (CPU, memory,
 * event loop) keep that label through the primary's aggregation, while the flashsale_* series are combined.
 */
export function createMetrics(options: { process?: string } = {}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, ...(options.process !== undefined && { labels: { process: options.process } }) });
  const metrics = {
    registry,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by method, route and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    reservations: new Counter({
      name: 'flashsale_reservations_total',
      help: 'Order attempts decided, by sale, SKU and result (ok, replayed, or the refusal code)',
      labelNames: ['sale', 'sku', 'result'] as const,
      registers: [registry],
    }),
    itemsDelisted: new Counter({
      name: 'flashsale_items_delisted_total',
      help: 'Items taken off sale, by reason (low_stock, operator)',
      labelNames: ['sale', 'sku', 'reason'] as const,
      registers: [registry],
    }),
    ordersPersisted: new Counter({
      name: 'flashsale_orders_persisted_total',
      help: 'Orders inserted into Postgres (redeliveries not counted)',
      registers: [registry],
    }),
    persistBatchSize: new Histogram({
      name: 'flashsale_persist_batch_size',
      help: 'Orders written to Postgres per batch',
      buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500],
      registers: [registry],
    }),
    persistLag: new Histogram({
      name: 'flashsale_order_persist_lag_seconds',
      help: 'From the order being accepted (201) to its row committed in Postgres',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    persistFailures: new Counter({
      name: 'flashsale_persist_failures_total',
      help: 'Batches that failed to persist, by reason (malformed; error: retried)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    ordersRejectedOversell: new Counter({
      name: 'flashsale_orders_rejected_oversell_total',
      help: 'Orders Redis accepted that Postgres\'s oversell guard refused (Redis had lost writes), recorded as rejected_oversell rows to compensate',
      registers: [registry],
    }),
    outageDeadlinesStretched: new Counter({
      name: 'flashsale_payment_outage_stretched_orders_total',
      help: 'Pending orders whose payment deadline moved on by a payment outage\'s length when it ended',
      registers: [registry],
    }),
    outboxSaleFailures: new Counter({
      name: 'flashsale_outbox_sale_failures_total',
      help: 'Rounds over one sale\'s outbox that failed; the persister went on with the next sale and retries it next round',
      registers: [registry],
    }),
    persistDeadLetters: new Counter({
      name: 'flashsale_persist_dead_letters_total',
      help: 'Order states Postgres refused as data (SQLSTATE class 22/23) and set aside in order_dead_letters, by SQLSTATE',
      labelNames: ['sqlstate'] as const,
      registers: [registry],
    }),
    ordersFinalised: new Counter({
      name: 'flashsale_orders_finalised_total',
      help: 'Orders that reached a final status (paid, cancelled, expired)',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    paymentAttempts: new Counter({
      name: 'flashsale_payment_attempts_total',
      help: 'Payment confirmations by result (paid, already_paid, or the refusal code); success ratio = paid / all',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    unitsReleased: new Counter({
      name: 'flashsale_units_released_total',
      help: 'Units given back to stock by cancelled and expired orders',
      labelNames: ['sale', 'sku', 'reason'] as const,
      registers: [registry],
    }),
    userOrdersIndexFailures: new Counter({
      name: 'flashsale_user_orders_index_failures_total',
      help: "Accepted orders that could not be added to the shopper's index (listed once persisted)",
      registers: [registry],
    }),
    itemsSoldOut: new Counter({
      name: 'flashsale_items_sold_out_total',
      help: 'Items whose available stock reached zero',
      labelNames: ['sale', 'sku'] as const,
      registers: [registry],
    }),
  };
  for (const status of ['paid', 'cancelled', 'expired']) metrics.ordersFinalised.inc({ status }, 0);
  for (const result of PAYMENT_RESULTS) metrics.paymentAttempts.inc({ result }, 0);
  return metrics;
}

/**
 * `flashsale_payment_outage_active`: 1 while an operator's payment outage holds deadlines (on, or
 * its deadlines still being moved), read from Redis at scrape time; every process reads the same
 * switch, so a cluster's aggregate is the largest.
 */
export function registerPaymentOutageGauge(metrics: Metrics, paused: () => Promise<boolean>): void {
  new Gauge({
    name: 'flashsale_payment_outage_active',
    help: 'Whether a payment outage holds payment deadlines (1) or not (0), read from Redis at scrape time',
    aggregator: 'max',
    registers: [metrics.registry],
    async collect() {
      const on = await paused().catch(() => undefined);
      if (on !== undefined) this.set(on ? 1 : 0);
    },
  });
}

/** `flashsale_queue_jobs{state}`, read from BullMQ at scrape time. */
export function registerQueueGauge(metrics: Metrics, jobCounts: () => Promise<Record<string, number>>): void {
  new Gauge({
    name: 'flashsale_queue_jobs',
    help: 'Jobs in the persist queue, by state',
    labelNames: ['state'] as const,
    registers: [metrics.registry],
    async collect() {
      const counts = await jobCounts().catch(() => ({}) as Record<string, number>);
      for (const [state, count] of Object.entries(counts)) this.set({ state }, count);
    },
  });
}

/**
 * `flashsale_stock_available{sale,sku}`, read from Redis at scrape time (`levels`: the live sales'
 * items): an item's total left over all its stock shards (Σ available + units in transfer + the
 * low-stock level's held units). Registered by the worker role only: stock rises as well as falls (restocks, cancels,
 * expiries), so no API process's last sighting can speak for the cluster, and one reader at scrape
 * time is both right and cheap. In a cluster only the worker process has the series, so the
 * primary's aggregate is that one value ('first').
 */
export function registerStockGauge(metrics: Metrics, levels: () => Promise<readonly { saleId: string; sku: string; available: number }[]>): void {
  new Gauge({
    name: 'flashsale_stock_available',
    help: "Units left of each item (its total over all stock shards), read from Redis at scrape time (live sales only)",
    labelNames: ['sale', 'sku'] as const,
    aggregator: 'first',
    registers: [metrics.registry],
    async collect() {
      const read = await levels().catch(() => undefined);
      // A failed read leaves the last values: a gap in Redis should not look like stock vanishing.
      if (!read) return;
      this.reset();
      for (const level of read) this.set({ sale: level.saleId, sku: level.sku }, level.available);
    },
  });
}

/** Creates the series of a sale's items at 0, so dashboards and alerts see them before the rush. */
export function initialiseItemSeries(metrics: Metrics, saleId: string, skus: readonly string[]): void {
  for (const sku of skus) {
    for (const result of RESERVATION_RESULTS) metrics.reservations.inc({ sale: saleId, sku, result }, 0);
    for (const reason of ['low_stock', 'operator']) metrics.itemsDelisted.inc({ sale: saleId, sku, reason }, 0);
    metrics.itemsSoldOut.inc({ sale: saleId, sku }, 0);
    for (const reason of ['cancelled', 'expired']) metrics.unitsReleased.inc({ sale: saleId, sku, reason }, 0);
  }
}

export type Metrics = ReturnType<typeof createMetrics>;

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** What the listener serves: a registry, or a cluster primary's aggregate of its processes' registries. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export async function startMetricsServer(registry: MetricsSource, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n'),
    );
  });
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
