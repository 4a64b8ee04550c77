// The outbox persister: reads the outbox streams (one per stock shard of every live sale) through
// a consumer group, writes each batch to Postgres, and only then acknowledges and deletes its
// entries. The stream's pending list is the record of batches in flight, so each order crosses
// Redis once on its way to Postgres. Killed at any point it loses nothing: entries read and not
// acknowledged stay pending and are claimed by another persister once idle for `claimIdleMs`;
// writing them again is harmless (the writer is idempotent). A batch Postgres refuses as data (a
// value it cannot store) is handed to its partition's BullMQ queue, whose worker writes it order
// by order and keeps the refusals visible. (The oversell guard's refusals are recorded by the
// writer itself, as rejected_oversell rows.)
//
// Streams belong to persistence partitions (tag % partitions). With leases on (the service), a
// process works only the partitions it holds the lease of (partition-leases.ts), so all of a
// partition's Redis commands go to its shards' slots and its queue's. Busy streams are read every
// round; a stream found empty is polled less and less often (up to maxIdlePollMs), so many idle
// shards cost little.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import { roundFailureLevel, type RedisClient } from '../redis/connection.ts';
import { tagHex } from '../stock/keys.ts';
import { ackOutbox } from '../stock/scripts/ack-outbox.ts';
import type { Scripts } from '../stock/scripts/registry.ts';
import type { BatchWriter } from './batch-writer.ts';
import { isDataError, type DeadLetters } from './dead-letters.ts';
import { latestPerOrder, parseStreamEntries, type OutboxEntry, type RawStreamEntries } from './outbox.ts';
import { partitionOf, type OutboxStream } from './outbox-streams.ts';
import { PartitionLeases } from './partition-leases.ts';
import { PERSIST_JOB, persistBackoff, type PersistQueue } from './queue.ts';

export const OUTBOX_GROUP = 'persist';
/** The previous version's group on the same streams; left behind, it would only hold memory. */
const OBSOLETE_GROUP = 'relay';

export interface OutboxPersisterOptions {
  readonly batchSize?: number;
  /** Entries unacknowledged this long belong to a persister that died; another takes them over. */
  readonly claimIdleMs: number;
  /** Pause between rounds that found less than a full batch: lets the next batch fill. */
  readonly idleDelayMs?: number;
  /** Rounds in flight at once, so one batch is read while another is written. */
  readonly concurrency?: number;
  /** Its name in the consumer group; default host and process id (one persister per process). */
  readonly consumer?: string;
  /** Where entries no order can be read from are set aside, so they leave the stream. */
  readonly deadLetters: DeadLetters;
  /** How long a partition lease lasts unrenewed (a crashed holder's partitions are taken over after
   *  it); 0: no leases, every partition is read (tests that put two readers on one stream). */
  readonly leaseMs?: number;
  /** The longest pause between two reads of a stream found empty. */
  readonly maxIdlePollMs?: number;
  /** Told the partitions held after each change (their refused-batch workers follow). */
  readonly onPartitions?: (held: ReadonlySet<number>) => void;
}

/** The job id of a handed-over batch: the same entries of the same stream give the same id, so a
 *  hand-over repeated after a crash is one job (streams of two shards may hold equal entry ids). */
function handOverJobId(stream: OutboxStream, entries: readonly OutboxEntry[]): string {
  return `${stream.saleId}|${tagHex(stream.tag)}|${entries[0]!.streamId}|${entries[entries.length - 1]!.streamId}|${entries.length}`;
}

/** When a stream is read next: at once while busy, later and later while found empty. */
interface PollState {
  misses: number;
  nextAt: number;
}

export class OutboxPersister {
  /** Its name in the consumer group (its pending entries are listed under it). */
  readonly consumer: string;
  private readonly groups = new Set<string>();
  private readonly polls = new Map<string, PollState>();
  /** Per stream, where the next XAUTOCLAIM scan starts, so each round claims further along the
   *  pending list instead of the same oldest entries again. */
  private readonly claimCursors = new Map<string, string>();
  private running: Promise<unknown> | undefined;
  private stopping = false;
  /** Cuts short the pauses between rounds and retries when the persister stops. */
  private stopped = new AbortController();
  private lastClaimAt = 0;
  private readonly redis: RedisClient;
  private readonly prefix: string;
  private readonly batchSize: number;
  private readonly claimIdleMs: number;
  private readonly idleDelayMs: number;
  private readonly concurrency: number;
  private readonly deadLetters: DeadLetters;
  private readonly maxIdlePollMs: number;
  private readonly partitions: number;
  private readonly leases: PartitionLeases | undefined;
  /** When each partition held was taken (leases only). */
  private readonly takenAt = new Map<number, number>();
  /** Entries pending this long in a partition just taken over belong to its last holder, gone:
   *  its lease ran out (or it handed it back), so they need not wait out claimIdleMs. For twice
   *  this long after taking a partition, each round claims them. */
  private readonly takeoverIdleMs: number;

  constructor(
    private readonly scripts: Scripts,
    private readonly batches: BatchWriter,
    /** Partition i's queue of refused batches at index i: as many partitions as queues. */
    private readonly refusedBatches: readonly PersistQueue[],
    private readonly streams: () => Promise<readonly OutboxStream[]>,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    options: OutboxPersisterOptions,
  ) {
    this.redis = scripts.client;
    this.prefix = scripts.prefix;
    this.batchSize = options.batchSize ?? 1_000;
    this.claimIdleMs = options.claimIdleMs;
    this.idleDelayMs = options.idleDelayMs ?? 50;
    this.concurrency = options.concurrency ?? 2;
    this.consumer = options.consumer ?? `${hostname()}-${process.pid}`;
    this.deadLetters = options.deadLetters;
    this.maxIdlePollMs = options.maxIdlePollMs ?? 1_000;
    this.partitions = refusedBatches.length;
    if (this.partitions < 1) throw new Error('the persister needs one refused-batch queue per partition');
    const leaseMs = options.leaseMs ?? 3_000;
    const changed = (held: ReadonlySet<number>) => {
      logger.info({ event: 'persist_partitions', consumer: this.consumer, partitions: [...held].sort((a, b) => a - b).join(',') }, 'persist partitions held');
      options.onPartitions?.(held);
    };
    this.leases = leaseMs > 0 ? new PartitionLeases(this.redis, this.prefix, this.partitions, this.consumer, leaseMs, changed) : undefined;
    this.takeoverIdleMs = Math.min(this.claimIdleMs, leaseMs > 0 ? leaseMs : this.claimIdleMs);
  }

  /** The partitions this persister works now. */
  heldPartitions(): ReadonlySet<number> {
    return this.leases ? this.leases.current() : new Set(Array.from({ length: this.partitions }, (_, i) => i));
  }

  start(): void {
    if (this.running) return;
    this.stopping = false;
    this.stopped = new AbortController();
    this.running = Promise.all(Array.from({ length: this.concurrency }, () => this.loop()));
    this.leases?.start();
  }

  /** Finishes the batches in hand (a write failing meanwhile leaves them pending) and stops. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopped.abort();
    await this.running;
    this.running = undefined;
    await this.leases?.stop().catch((err: unknown) => this.logger.warn({ err }, 'could not hand back the persist leases; they run out on their own'));
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let full = false;
      try {
        ({ full } = await this.runOnce());
      } catch (err) {
        this.logger.warn({ err }, 'outbox round failed; retrying');
        await this.pause(500);
      }
      if (!full) await this.pause(this.idleDelayMs);
    }
  }

  /** One round over the streams of the partitions held: how many entries it persisted, and
   *  whether some stream had a full batch waiting (so more may follow at once). */
  async runOnce(now = Date.now()): Promise<{ persisted: number; full: boolean }> {
    const held = this.leases ? await this.leases.renewIfDue(now) : this.heldPartitions();
    if (this.leases) {
      for (const partition of this.takenAt.keys()) if (!held.has(partition)) this.takenAt.delete(partition);
      for (const partition of held) if (!this.takenAt.has(partition)) this.takenAt.set(partition, now);
    }
    const takingOver = (partition: number) => (this.takenAt.get(partition) ?? -Infinity) + 2 * this.takeoverIdleMs > now;
    const claim = now - this.lastClaimAt >= this.claimIdleMs / 2;
    if (claim) this.lastClaimAt = now;
    let persisted = 0;
    let full = false;
    for (const stream of await this.streams()) {
      if (this.stopping) break;
      const partition = partitionOf(stream.tag, this.partitions);
      if (!held.has(partition)) continue;
      const poll = this.polls.get(stream.key) ?? { misses: 0, nextAt: 0 };
      const takeover = takingOver(partition);
      if (!claim && !takeover && poll.nextAt > now) continue;
      // One stream's failure (its key lost or of the wrong type, a hand-over refused) must not keep
      // the streams after it from being persisted: it is logged and retried next round.
      try {
        await this.ensureGroup(stream.key);
        if (takeover) persisted += await this.persist(stream, await this.claimTakenOver(stream.key));
        if (claim) persisted += await this.persist(stream, await this.claimStale(stream.key));
        const read = await this.readNew(stream.key);
        persisted += await this.persist(stream, read);
        full ||= read.length === this.batchSize;
        this.polled(stream.key, poll, read.length > 0, now);
      } catch (err) {
        if (this.stopping) throw err;
        // The stream was deleted and made again without the group: create it next round.
        if (String((err as Error).message).includes('NOGROUP')) this.forgetStream(stream.key);
        this.metrics.outboxSaleFailures.inc();
        this.logger[roundFailureLevel(err)]({ saleId: stream.saleId, stream: stream.key, err: (err as Error).message }, 'persisting an outbox stream failed; going on with the next');
      }
    }
    return { persisted, full };
  }

  /** Busy: read again next round. Empty: wait idleDelayMs, doubled per empty read, up to maxIdlePollMs. */
  private polled(key: string, poll: PollState, busy: boolean, now: number): void {
    poll.misses = busy ? 0 : poll.misses + 1;
    poll.nextAt = busy ? 0 : now + Math.min(this.maxIdlePollMs, this.idleDelayMs * 2 ** Math.min(poll.misses - 1, 16));
    this.polls.set(key, poll);
  }

  private forgetStream(stream: string): void {
    this.groups.delete(stream);
    this.claimCursors.delete(stream);
    this.polls.delete(stream);
  }

  private async ensureGroup(stream: string): Promise<void> {
    if (this.groups.has(stream)) return;
    try {
      // From the start of the stream: entries are deleted once persisted, so all present are due.
      await this.redis.xgroup('CREATE', stream, OUTBOX_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    // ackOutbox's trim assumes one group per stream; the old one's entries are this one's too.
    await this.redis.xgroup('DESTROY', stream, OBSOLETE_GROUP);
    this.groups.add(stream);
  }

  private async readNew(stream: string): Promise<RawStreamEntries> {
    const reply = (await this.redis.xreadgroup('GROUP', OUTBOX_GROUP, this.consumer, 'COUNT', this.batchSize, 'STREAMS', stream, '>')) as
      | [string, RawStreamEntries][]
      | null;
    return reply?.[0]?.[1] ?? [];
  }

  private async claimStale(stream: string): Promise<RawStreamEntries> {
    const cursor = this.claimCursors.get(stream) ?? '0-0';
    const reply = (await this.redis.xautoclaim(stream, OUTBOX_GROUP, this.consumer, this.claimIdleMs, cursor, 'COUNT', this.batchSize)) as [
      string,
      RawStreamEntries,
      ...unknown[],
    ];
    // '0-0' once the scan reached the end: the next round starts over.
    this.claimCursors.set(stream, reply[0]);
    // Entries deleted meanwhile come back as [id, null] (Redis < 7); nothing is left of them.
    return reply[1].filter(([, fields]) => Array.isArray(fields));
  }

  /** The oldest batch its last holder left pending in a stream of a partition just taken over. */
  private async claimTakenOver(stream: string): Promise<RawStreamEntries> {
    const reply = (await this.redis.xautoclaim(stream, OUTBOX_GROUP, this.consumer, this.takeoverIdleMs, '0-0', 'COUNT', this.batchSize)) as [string, RawStreamEntries, ...unknown[]];
    return reply[1].filter(([, fields]) => Array.isArray(fields));
  }

  /** Writes the entries and then acknowledges them; returns how many it acknowledged. */
  private async persist(stream: OutboxStream, raw: RawStreamEntries): Promise<number> {
    if (raw.length === 0) return 0;
    const { entries, malformed } = parseStreamEntries(stream.saleId, raw);
    const ids = entries.map((entry) => entry.streamId);
    if (entries.length > 0) await this.holding(stream.key, ids, () => this.write(stream, entries));
    if (malformed.length > 0) await this.setAside(stream.saleId, raw, malformed);
    await ackOutbox(this.scripts, { outbox: stream.key }, { group: OUTBOX_GROUP, entryIds: [...ids, ...malformed] });
    return ids.length;
  }

  /** Entries no order can be read from would stay pending for ever, be claimed again every round
   *  and hold back the trim point: they are recorded as dead letters (raw fields kept) and then
   *  acknowledged with the batch, so they leave the stream. */
  private async setAside(saleId: string, raw: RawStreamEntries, malformed: readonly string[]): Promise<void> {
    const bad = new Set(malformed);
    for (const [streamId, fields] of raw) {
      if (bad.has(streamId)) await this.deadLetters.recordMalformedEntry(saleId, streamId, fields);
    }
    this.metrics.persistFailures.inc({ reason: 'malformed' }, malformed.length);
    this.logger.error({ event: 'outbox_malformed', saleId, malformed }, 'outbox entries could not be parsed; set aside in order_dead_letters');
  }

  /** Writes the batch, retrying transient failures (Postgres away) until it lands or the persister stops. */
  private async write(stream: OutboxStream, entries: readonly OutboxEntry[]): Promise<void> {
    const { saleId } = stream;
    const orders = latestPerOrder(entries);
    this.metrics.persistBatchSize.observe(orders.length);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.batches.write(saleId, orders);
        return;
      } catch (error) {
        if (isDataError(error)) {
          // Refused, not failed: retrying the batch cannot help; BullMQ's worker sorts it order by order.
          const queue = this.refusedBatches[partitionOf(stream.tag, this.partitions)]!;
          await queue.add(PERSIST_JOB, { saleId, entries }, { jobId: handOverJobId(stream, entries) });
          return;
        }
        this.metrics.persistFailures.inc({ reason: 'error' });
        if (attempt >= 2) this.logger.warn({ saleId, attempt, err: (error as Error).message }, 'persisting a batch still failing; retrying');
        await this.pause(persistBackoff(attempt));
        // Left pending: another persister (or this one, restarted) claims the entries.
        if (this.stopping) throw error;
      }
    }
  }

  private async pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.stopped.signal }).catch(() => undefined);
  }

  /** Runs `work` while keeping the entries claimed: their idle time is reset well before
   *  `claimIdleMs`, so a live persister's slow batch is never taken over. */
  private async holding<T>(stream: string, ids: readonly string[], work: () => Promise<T>): Promise<T> {
    const renew = setInterval(() => {
      this.redis.xclaim(stream, OUTBOX_GROUP, this.consumer, 0, ...ids, 'JUSTID').catch((err: unknown) => {
        this.logger.warn({ err }, 'could not renew the claim on a batch in flight');
      });
    }, this.claimIdleMs / 3);
    try {
      return await work();
    } finally {
      clearInterval(renew);
    }
  }
}

