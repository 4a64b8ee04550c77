// The composition root: builds the clients a role needs, starts it, and stops it in order —
// readiness fails first, in-flight requests finish, then workers, Redis and Postgres close.
import type { Config, Role } from './config.ts';
import type { Logger } from './logger.ts';
import { createMetrics, initialiseItemSeries, registerPaymentOutageGauge, registerQueueGauge, registerStockGauge, startMetricsServer, type Metrics, type MetricsServer } from './metrics.ts';
import { BatchWriter } from './orders/batch-writer.ts';
import { DeadLetters } from './orders/dead-letters.ts';
import { OrderWriter } from './orders/order-writer.ts';
import { OutboxPersister } from './orders/outbox-persister.ts';
import { LiveOutboxStreams } from './orders/outbox-streams.ts';
import { PaymentOutage } from './orders/payment-outage.ts';
import { PartitionWorkers } from './orders/persist-worker.ts';
import { createPersistQueues } from './orders/queue.ts';
import { closeRedis, createRedis, type RedisClient } from './redis/connection.ts';
import { createPool, type Pool } from './db/pool.ts';
import { buildApp, type App } from './http/app.ts';
import type { ReadinessReport } from './http/routes/health.ts';
import { OrderRepository } from './orders/repository.ts';
import { OrderStore } from './orders/order-store.ts';
import { ExpirySweeper } from './orders/expiry-sweeper.ts';
import { OrderLifecycle, type LifecycleEvents } from './orders/lifecycle.ts';
import { Reservations, type ReservationEvents } from './orders/reservations.ts';
import { SaleReporter } from './sales/report.ts';
import { SaleCatalog } from './sales/catalog.ts';
import { SaleRepository } from './sales/repository.ts';
import { SalesService, type SaleEvents } from './sales/sales-service.ts';
import { AttemptWindow } from './stock/attempt-window.ts';
import { ClosedItems } from './stock/closed-items.ts';
import { stockEventsChannel } from './stock/keys.ts';
import { defineScripts, ensureScriptsLoaded } from './stock/scripts/registry.ts';
import { anchoredItems, TransferRecovery } from './stock/transfer-recovery.ts';
import { StockTransfers } from './stock/transfers.ts';
import { SaleRebuilder } from './recovery/rebuild.ts';
import { SaleRecovery, createRecoveryMetrics } from './recovery/recovery.ts';
import { boundedStep } from './bounded-step.ts';

export interface RunningService {
  readonly app: App | undefined;
  readonly metrics: Metrics;
  /** Absent in a cluster's process: the primary serves the cluster's metrics (src/cluster/). */
  readonly metricsServer: MetricsServer | undefined;
  readonly sales: SalesService;
  readonly reservations: Reservations;
  readonly persister: OutboxPersister | undefined;
  stop(): Promise<void>;
}

const PROBE_TIMEOUT_MS = 1_000;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  // Should the timeout win, the check may still fail later: that failure is already reported.
  promise.catch(() => {});
  return Promise.race([
    promise,
    new Promise<T>((_resolve, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref()),
  ]);
}

async function probe(check: () => Promise<unknown>): Promise<boolean> {
  try {
    return (await withTimeout(check(), PROBE_TIMEOUT_MS)) !== false;
  } catch {
    return false;
  }
}

function metricEvents(metrics: Metrics): SaleEvents {
  return {
    onDelisted: (saleId, sku, reason) => metrics.itemsDelisted.inc({ sale: saleId, sku, reason }),
    onSaleKnown: (sale) => initialiseItemSeries(metrics, sale.id, sale.items.map((item) => item.sku)),
  };
}

function reservationEvents(metrics: Metrics): Partial<ReservationEvents> {
  return {
    onLowStockDelisted: (saleId, sku) => metrics.itemsDelisted.inc({ sale: saleId, sku, reason: 'low_stock' }),
    onSoldOut: (saleId, sku) => metrics.itemsSoldOut.inc({ sale: saleId, sku }),
    onIndexWriteFailed: () => metrics.userOrdersIndexFailures.inc(),
  };
}

function lifecycleEvents(metrics: Metrics, catalog: SaleCatalog, closedItems: ClosedItems): LifecycleEvents {
  return {
    onReleased: (released, reason) => {
      metrics.unitsReleased.inc({ sale: released.saleId, sku: released.sku, reason }, released.units);
      metrics.ordersFinalised.inc({ status: reason }, released.orderIds.length);
    },
    onPaid: () => metrics.ordersFinalised.inc({ status: 'paid' }),
    onReopened: async (saleId, sku) => {
      closedItems.reopen(saleId, sku);
      await catalog.announceReopened(saleId, sku);
    },
  };
}

/** Clears this process's sold-out marks when any process announces a reopening. */
function subscribeToReopenings(subscriber: RedisClient, prefix: string, closedItems: ClosedItems, logger: Logger): Promise<unknown> {
  subscriber.on('message', (_channel: string, message: string) => {
    try {
      const { saleId, sku } = JSON.parse(message) as { saleId: string; sku: string };
      closedItems.reopen(saleId, sku);
    } catch (err) {
      logger.warn({ err, message }, 'ignored a malformed stock event');
    }
  });
  return subscriber.subscribe(stockEventsChannel(prefix));
}

export interface ServiceOptions {
  /** Set when this process is one of a cluster's (src/cluster/): names its process metrics, and opens no metrics listener. */
  readonly clusterProcess?: string;
}

export async function startService(config: Config, logger: Logger, role: Role, options: ServiceOptions = {}): Promise<RunningService> {
  const metrics = createMetrics(options.clusterProcess === undefined ? {} : { process: options.clusterProcess });
  const prefix = config.redis.prefix;
  const redis = createRedis(config, { name: `flashsale-${role}`, enableAutoPipelining: true });
  const serves = role === 'api' || role === 'all';
  // Only the API listens for reopenings (its sold-out marks); workers just publish them.
  const subscriber = serves ? createRedis(config, { name: `flashsale-${role}-events` }) : undefined;
  const pool: Pool = createPool(config);
  pool.on('error', (err) => logger.warn({ err }, 'idle Postgres client failed'));
  // Replica durability: reserves go on a connection of their own, since each WAIT holds its
  // connection until the replicas answer, and every command queued behind it would wait too.
  const durability = config.redis.durability;
  const durable = serves && durability.mode === 'replica' ? createRedis(config, { name: `flashsale-${role}-durable` }) : undefined;
  for (const client of [redis, subscriber, durable]) client?.on('error', (err: Error) => logger.warn({ err: err.message }, 'Redis connection error'));

  const scripts = defineScripts(redis, prefix);
  const closedItems = new ClosedItems();
  const attempts = new AttemptWindow(config.rateLimit.userPerSecond);
  const catalog = new SaleCatalog(scripts);
  const replicaAck = durable && durability.mode === 'replica' ? { replicas: durability.replicas, timeoutMs: durability.timeoutMs } : undefined;
  const reserveScripts = durable && replicaAck ? defineScripts(durable, prefix) : scripts;
  // K > 1: a dry home shard pulls stock from the item's other shards (on the reserve connection,
  // with the same replica acks), and an item out of stock above its level is delisted by the catalog.
  const pulls = new StockTransfers(reserveScripts, { ack: replicaAck, onReopened: (saleId, sku) => catalog.announceReopened(saleId, sku) });
  const reservations = new Reservations(reserveScripts, {
    closedItems,
    attempts,
    replicaAck,
    sharded: { transfers: pulls, delistLowStock: (saleId, sku, shards, now) => catalog.delistLowStock(saleId, sku, shards, now) },
    events: reservationEvents(metrics),
    logger,
  });
  const saleRepository = new SaleRepository(pool);
  const sales = new SalesService(saleRepository, catalog, metricEvents(metrics), logger);
  const orders = new OrderStore(redis, prefix, new OrderRepository(pool));
  // Every stock shard of every sale that may still hold pending orders: where an outage's deadlines move.
  const paymentOutage = new PaymentOutage(redis, prefix, () => sales.liveShards(), { onChanged: () => undefined, onStretched: (n) => metrics.outageDeadlinesStretched.inc(n) }, logger);
  registerPaymentOutageGauge(metrics, () => paymentOutage.paused());
  const lifecycle = new OrderLifecycle(scripts, orders, lifecycleEvents(metrics, catalog, closedItems), paymentOutage);
  const persistQueues = createPersistQueues(config, logger);
  const reporter = new SaleReporter(sales, pool, catalog, () => persistQueues.queues);
  // Every role rebuilds a sale whose Redis state is lost from Postgres (racing processes are serialised).
  const recovery = new SaleRecovery(redis, prefix, pool, new SaleRebuilder(redis, prefix, pool, saleRepository, logger), createRecoveryMetrics(metrics.registry), logger);

  let stopping = false;
  const readiness = async (): Promise<ReadinessReport> => {
    const [redisOk, postgresOk, scriptsOk] = await Promise.all([
      probe(() => redis.ping()),
      probe(() => pool.query('SELECT 1')),
      probe(() => ensureScriptsLoaded(redis)),
    ]);
    const checks = { redis: redisOk, postgres: postgresOk, scripts: scriptsOk, accepting: !stopping };
    // Detail, not a check: an instance is as ready during a payment outage as outside one.
    const outage = await paymentOutage.status().catch(() => undefined);
    const paymentOutageDetail = outage && outage.state !== 'none' ? { paymentOutage: { state: outage.state, startedAt: new Date(outage.startedAt!).toISOString() } } : {};
    return { ready: Object.values(checks).every(Boolean), checks, degraded: recovery.degraded(), ...paymentOutageDetail };
  };

  const metricsServer =
    options.clusterProcess === undefined ? await startMetricsServer(metrics.registry, config.metrics.host, config.metrics.port) : undefined;
  let app: App | undefined;
  if (serves && subscriber) {
    await subscribeToReopenings(subscriber, prefix, closedItems, logger).catch((err: unknown) =>
      logger.warn({ err }, 'stock events subscription failed; sold-out marks expire on their own'),
    );
    await sales.announceKnownSales().catch((err: unknown) => logger.warn({ err }, 'could not list sales at start-up'));
    app = await buildApp({ config, logger, metrics, readiness, sales, reservations, orders, lifecycle, reporter, paymentOutage, recovery });
    await app.listen({ host: config.http.host, port: config.http.port });
  }
  let persister: OutboxPersister | undefined;
  const stopWorkers: [string, () => Promise<unknown>][] = [];
  if (role === 'worker' || role === 'all') {
    const batches = new BatchWriter(new OrderWriter(pool), redis, prefix, metrics, logger);
    // Each partition's refused-batch worker runs in the process holding the partition's lease.
    const persistWorkers = new PartitionWorkers({ config, pool, batches, redis, metrics, logger });
    const streams = new LiveOutboxStreams(prefix, () => sales.liveSaleIds(), (saleId) => saleRepository.find(saleId));
    persister = new OutboxPersister(scripts, batches, persistQueues.queues, () => streams.list(), metrics, logger, {
      claimIdleMs: config.queueLockDurationMs,
      deadLetters: new DeadLetters(pool),
      onPartitions: (held) => void persistWorkers.hold(held).catch((err: unknown) => logger.warn({ err }, 'could not start or stop a persist worker')),
    });
    registerQueueGauge(metrics, () => persistQueues.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed'));
    // One reader per deployment's worker, not every API process: see registerStockGauge.
    registerStockGauge(metrics, () => sales.stockLevels());
    // While a payment outage holds deadlines the sweeper finds nothing to sweep (read each round).
    const sweepable = async () => ((await paymentOutage.paused()) ? [] : sales.liveShards());
    const sweeper = new ExpirySweeper(redis, lifecycle, prefix, sweepable, logger);
    // Finishes stock transfers whose driver died between a shard's debit and the other's credit.
    const transferRecovery = new TransferRecovery(
      new StockTransfers(scripts, { onReopened: (saleId, sku) => catalog.announceReopened(saleId, sku) }),
      anchoredItems(redis, prefix, () => sales.liveSaleIds()),
      logger,
    );
    const running = persister;
    running.start();
    sweeper.start();
    transferRecovery.start();
    // Stop taking new work first, then let in-flight batches finish, then close the producer.
    stopWorkers.push(
      ['expiry sweeper', () => sweeper.stop()],
      ['transfer recovery', () => transferRecovery.stop()],
      ['outbox persister', () => running.stop()],
      ['persist workers', () => persistWorkers.close()],
    );
  }
  // The worker role looks at every live sale each second; API processes look on demand (a storefront
  // not-found), so they send Redis nothing in the background.
  if (role === 'worker' || role === 'all') recovery.start();
  stopWorkers.unshift(['lost-state recovery', () => recovery.stop()]);
  stopWorkers.push(['persist queues', () => persistQueues.close()]);
  logger.info({ role, metricsPort: metricsServer?.port }, 'service started');

  return {
    app,
    metrics,
    metricsServer,
    sales,
    reservations,
    persister,
    async stop() {
      stopping = true;
      if (app) await app.close();
      for (const [name, stopWorker] of stopWorkers) await boundedStep(name, stopWorker, logger);
      await Promise.all([closeRedis(redis), subscriber && closeRedis(subscriber), durable && closeRedis(durable)]);
      await pool.end();
      await metricsServer?.close();
      logger.info({ role }, 'service stopped');
    },
  };
}
