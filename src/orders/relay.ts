// The relay: moves each sale's outbox entries into BullMQ in batches. It reads through a consumer
// group, enqueues one job per batch with a deterministic id, then acknowledges and deletes the
// entries. Killed at any point it loses nothing: unacknowledged entries are claimed again after
// a while, and re-enqueueing them is harmless (the writer is idempotent).
import { hostname } from 'node:os';
import type { Logger } from '../logger.ts';
import type { RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import { ackOutbox } from '../stock/scripts/ack-outbox.ts';
import type { Scripts } from '../stock/scripts/registry.ts';
import { parseStreamEntries, type OutboxEntry } from './outbox.ts';
import { PERSIST_JOB, type PersistQueue } from './queue.ts';

export const RELAY_GROUP = 'relay';

export interface RelayOptions {
  readonly batchSize?: number;
  /** Entries unacknowledged this long belong to a relay that died; another takes them over. */
  readonly claimIdleMs?: number;
  /** Pause between rounds when there was nothing to move. */
  readonly idleDelayMs?: number;
}

type RawEntries = [string, string[]][];

export class OutboxRelay {
  private readonly consumer = `${hostname()}-${process.pid}`;
  private readonly groups = new Set<string>();
  private running: Promise<void> | undefined;
  private stopping = false;
  private readonly batchSize: number;
  private readonly claimIdleMs: number;
  private readonly idleDelayMs: number;
  private lastClaimAt = 0;

  private readonly redis: RedisClient;
  private readonly prefix: string;

  constructor(
    private readonly scripts: Scripts,
    private readonly queue: PersistQueue,
    private readonly liveSaleIds: () => Promise<readonly string[]>,
    private readonly logger: Logger,
    options: RelayOptions = {},
  ) {
    this.redis = scripts.client;
    this.prefix = scripts.prefix;
    this.batchSize = options.batchSize ?? 500;
    this.claimIdleMs = options.claimIdleMs ?? 5_000;
    this.idleDelayMs = options.idleDelayMs ?? 20;
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      let moved = 0;
      try {
        moved = await this.runOnce();
      } catch (err) {
        this.logger.warn({ err }, 'relay round failed; retrying');
        await delay(500);
      }
      if (moved === 0) await delay(this.idleDelayMs);
    }
  }

  /** One round over every live sale; returns how many entries it moved into the queue. */
  async runOnce(now = Date.now()): Promise<number> {
    const claim = now - this.lastClaimAt >= this.claimIdleMs / 2;
    if (claim) this.lastClaimAt = now;
    let moved = 0;
    for (const saleId of await this.liveSaleIds()) {
      const stream = saleKeys(this.prefix, saleId).outbox;
      await this.ensureGroup(stream);
      if (claim) moved += await this.relay(saleId, stream, await this.claimStale(stream));
      moved += await this.relay(saleId, stream, await this.readNew(stream));
    }
    return moved;
  }

  private async ensureGroup(stream: string): Promise<void> {
    if (this.groups.has(stream)) return;
    try {
      // From the start of the stream: entries are deleted once relayed, so all present are due.
      await this.redis.xgroup('CREATE', stream, RELAY_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.groups.add(stream);
  }

  private async readNew(stream: string): Promise<RawEntries> {
    const reply = (await this.redis.xreadgroup('GROUP', RELAY_GROUP, this.consumer, 'COUNT', this.batchSize, 'STREAMS', stream, '>')) as
      | [string, RawEntries][]
      | null;
    return reply?.[0]?.[1] ?? [];
  }

  private async claimStale(stream: string): Promise<RawEntries> {
    const reply = (await this.redis.xautoclaim(stream, RELAY_GROUP, this.consumer, this.claimIdleMs, '0-0', 'COUNT', this.batchSize)) as [
      string,
      RawEntries,
      ...unknown[],
    ];
    // Entries deleted meanwhile come back as [id, null]; nothing is left of them to relay.
    return reply[1].filter(([, fields]) => Array.isArray(fields));
  }

  private async relay(saleId: string, stream: string, raw: RawEntries): Promise<number> {
    if (raw.length === 0) return 0;
    const { entries, malformed } = parseStreamEntries(saleId, raw);
    if (malformed.length > 0) this.logger.error({ saleId, malformed }, 'outbox entries could not be parsed; left in the stream for inspection');
    if (entries.length > 0) await this.enqueue(saleId, entries);
    const ids = entries.map((entry) => entry.streamId);
    if (ids.length > 0) await ackOutbox(this.scripts, { saleId }, { group: RELAY_GROUP, entryIds: ids });
    return ids.length;
  }

  private async enqueue(saleId: string, entries: readonly OutboxEntry[]): Promise<void> {
    const first = entries[0]!.streamId;
    const last = entries[entries.length - 1]!.streamId;
    // Same entries, same id: a relay that died before acknowledging re-adds a job BullMQ already has.
    await this.queue.add(PERSIST_JOB, { saleId, entries }, { jobId: `${saleId}|${first}|${last}|${entries.length}` });
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
