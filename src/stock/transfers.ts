// Moves stock between the shards of one item with exactly-once transfers (docs/design.md, "Stock
// transfers"). A shopper always orders from their home shard; when it runs dry while other shards
// still hold stock, the reserve path pulls units in rather than answer SOLD_OUT. A transfer is
// three idempotent scripts keyed by one id X, each in one shard's slot: transferOut debits the
// donor into outPending and logs X, transferIn credits the target once per X, transferDone takes
// the units out of the donor's outPending. A driver that dies between steps leaves X in the
// donor's transfersSent; recover() (any process meeting outPending, and the worker's
// TransferRecovery) finishes it. No step creates stock: a debit happens once per X, a credit
// once per X and only for an X read from the donor's log or its OK.
import { randomUUID } from 'node:crypto';
import { shardKeys } from './keys.ts';
import type { Scripts } from './scripts/registry.ts';
import type { ReplicaAck } from './scripts/acked.ts';
import { transferDone } from './scripts/transfer-done.ts';
import { transferIn } from './scripts/transfer-in.ts';
import { transferOut, type TransferShard } from './scripts/transfer-out.ts';

export interface ShardTotals {
  /** Per shard, index k. */
  readonly available: number[];
  readonly outPending: number[];
  readonly delisted: string[];
  /** Shard 0's held units (the low-stock level's, never sold nor transferred). */
  readonly held: number;
}

export interface StockTransfersOptions {
  /** Replica durability: WAIT after Out (before In) and after In (before Done). */
  readonly ack?: ReplicaAck | undefined;
  /** A transfer still `sent` this long after its debit is left to recovery to finish. */
  readonly staleMs?: number;
  /** Called when a credit made a dry, listed shard sell again (announce it to the API processes). */
  readonly onReopened?: (saleId: string, sku: string, shard: number) => unknown;
  readonly now?: () => number;
}

/** A driver that is alive finishes a transfer within a few round trips; 2 s is a dead one. */
const DEFAULT_STALE_MS = 2_000;
/** Transfers recovered per shard and call; the next call (or sweeper round) takes the rest. */
const RECOVER_BATCH = 100;

/** A step's WAIT came back with fewer replicas than asked: the transfer is left to recovery. */
export class TransferNotDurable extends Error {
  override readonly name = 'TransferNotDurable';
}

export class StockTransfers {
  /** Pulls in flight in this process, per (sale, sku, target shard): one at a time. */
  private readonly pulls = new Map<string, Promise<number>>();
  private readonly ack: ReplicaAck | undefined;
  private readonly staleMs: number;
  private readonly now: () => number;

  constructor(
    private readonly scripts: Scripts,
    private readonly options: StockTransfersOptions = {},
  ) {
    this.ack = options.ack;
    this.staleMs = options.staleMs ?? DEFAULT_STALE_MS;
    this.now = options.now ?? Date.now;
  }

  /** Every shard's available, outPending and delisted, and shard 0's held: one parallel read. */
  async totals(saleId: string, sku: string, shards: number): Promise<ShardTotals> {
    const rows = await Promise.all(
      Array.from({ length: shards }, (_, k) => this.scripts.client.hmget(shardKeys(this.scripts.prefix, saleId, sku, k).item, 'available', 'outPending', 'delisted', 'held')),
    );
    return {
      available: rows.map((row) => toInt(row[0])),
      outPending: rows.map((row) => toInt(row[1])),
      delisted: rows.map((row) => row[2] ?? ''),
      held: toInt(rows[0]?.[3]),
    };
  }

  /**
   * Moves at least `need` units (when the other shards hold them) into shard `to`, from the
   * richest donors first, each giving max(need left, half its stock) capped at what it has, so
   * the next dry shopper on `to` finds stock without another pull. Single-flight per target shard
   * in this process: a caller arriving during a pull shares its result (whatever its own need:
   * it reserves again, and pulls again if still short). Returns the units moved.
   */
  pullInto(saleId: string, sku: string, shards: number, to: number, need: number): Promise<number> {
    if (!Number.isInteger(to) || to < 0 || to >= shards) return Promise.reject(new RangeError(`shard ${to} is not one of ${shards}`));
    if (!Number.isInteger(need) || need < 1 || shards < 2) return Promise.resolve(0);
    const flight = JSON.stringify([saleId, sku, to]);
    const running = this.pulls.get(flight);
    if (running) return running;
    const pull = this.pull(saleId, sku, shards, to, need).finally(() => this.pulls.delete(flight));
    this.pulls.set(flight, pull);
    return pull;
  }

  private async pull(saleId: string, sku: string, shards: number, to: number, need: number): Promise<number> {
    let totals = await this.totals(saleId, sku, shards);
    // Units debited and never credited (a driver died) would sit out of every shard's available.
    if (totals.outPending.some((units) => units > 0) && (await this.recover(saleId, sku, shards)) > 0) {
      totals = await this.totals(saleId, sku, shards);
    }
    const donors = totals.available
      .map((available, shard) => ({ shard, available }))
      .filter((donor) => donor.shard !== to && donor.available > 0)
      .sort((a, b) => b.available - a.available);
    let moved = 0;
    for (const donor of donors) {
      const left = need - moved;
      if (left <= 0) break;
      const want = Math.min(donor.available, Math.max(left, Math.ceil(donor.available / 2)));
      moved += await this.transfer({ saleId, sku, shard: donor.shard }, to, want);
    }
    return moved;
  }

  /** One transfer, Out → In → Done, under a fresh id; the units credited to `to` (0 if the donor ran dry meanwhile). */
  private async transfer(donor: TransferShard, to: number, want: number): Promise<number> {
    const transferId = randomUUID();
    const out = await transferOut(this.scripts, donor, { transferId, to, want, min: 1, now: this.now() }, this.ack);
    if (out.reply.code !== 'OK') return 0; // EMPTY (sold meanwhile) or ITEM_NOT_FOUND; ALREADY cannot happen to a fresh id.
    this.checkAcked(out.acknowledgedBy, 'debit');
    await this.finish(donor, to, transferId, out.reply.quantity);
    return out.reply.quantity;
  }

  /** In then Done for a debited transfer; true when this call closed it (Done answered OK). */
  private async finish(donor: TransferShard, to: number, transferId: string, quantity: number): Promise<boolean> {
    const target = { saleId: donor.saleId, sku: donor.sku, shard: to };
    const credited = await transferIn(this.scripts, target, { transferId, quantity }, this.ack);
    if (credited.reply.code === 'ITEM_NOT_FOUND') throw new Error(`transfer ${transferId}: target shard ${to} of ${donor.saleId}/${donor.sku} is not loaded`);
    this.checkAcked(credited.acknowledgedBy, 'credit');
    const closed = (await transferDone(this.scripts, donor, transferId)).code === 'OK';
    // Announced once the transfer is closed: a failed announcement leaves nothing to recover.
    if (credited.reply.code === 'OK' && credited.reply.reopened) await this.options.onReopened?.(donor.saleId, donor.sku, to);
    return closed;
  }

  // A debit not yet on a replica must not be credited (a failover could lose the debit and keep
  // the credit: stock created); a credit not yet on a replica must not close the debit (a
  // failover could lose the credit: stock lost). Stopping leaves X sent; recovery finishes it.
  private checkAcked(acknowledgedBy: number | undefined, step: string): void {
    if (this.ack && acknowledgedBy !== undefined && acknowledgedBy < this.ack.replicas) {
      throw new TransferNotDurable(`transfer ${step} reached ${acknowledgedBy} of ${this.ack.replicas} replicas; left to recovery`);
    }
  }

  /**
   * Finishes every transfer of the item debited more than staleMs ago and still `sent` (its driver
   * died or gave up): In with the logged quantity, then Done. Safe beside live drivers and other
   * recoverers: every step is idempotent on X. Returns the units whose transfer this call closed.
   */
  async recover(saleId: string, sku: string, shards: number): Promise<number> {
    const before = this.now() - this.staleMs;
    const perShard = await Promise.all(
      Array.from({ length: shards }, async (_, shard) => {
        const keys = shardKeys(this.scripts.prefix, saleId, sku, shard);
        const stale = await this.scripts.client.zrangebyscore(keys.transfersSent, '-inf', before, 'LIMIT', 0, RECOVER_BATCH);
        let units = 0;
        for (const transferId of stale) {
          const logged = await this.scripts.client.hget(keys.transfersOut, transferId);
          const record = logged === null ? undefined : parseRecord(logged);
          if (!record || record.to < 0 || record.to >= shards) continue; // not ours to guess: left visible in outPending
          // `done` yet still listed cannot happen through the scripts (Done writes both at once).
          if (record.state === 'sent' && (await this.finish({ saleId, sku, shard }, record.to, transferId, record.quantity))) units += record.quantity;
        }
        return units;
      }),
    );
    return perShard.reduce((sum, units) => sum + units, 0);
  }
}

/** transfersOut's value: `to|qty|atMs|state`. */
function parseRecord(logged: string): { to: number; quantity: number; at: number; state: string } | undefined {
  const [to, quantity, at, state] = logged.split('|');
  const numbers = [Number(to), Number(quantity), Number(at)];
  if (state === undefined || !numbers.every(Number.isInteger)) return undefined;
  return { to: numbers[0]!, quantity: numbers[1]!, at: numbers[2]!, state };
}

function toInt(value: string | null | undefined): number {
  const parsed = Number(value ?? 0);
  return Number.isFinite(parsed) ? parsed : 0;
}
