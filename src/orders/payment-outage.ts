// The payment-outage switch. A payment provider that is down is not the shopper's fault, so the
// payment window stretches (docs/design.md, "Payment outages"): while an operator says payments
// are out, nothing expires for lateness — the sweeper expires nothing, a payment or a cancel
// never turns into an expiry — and when the outage ends, every order still pending whose
// deadline fell during it gets its deadline moved on by the outage's length, in Redis (record,
// deadlines, outbox, so Postgres's expires_at follows), before expiry resumes.
//
// The state is one small hash in Redis, so every process and the sweepers of every worker see
// it: `state` ('active' | 'ending'), `startedAt`, `endedAt` (ms). 'ending' means the outage is
// over and deadlines are being moved: expiry stays paused until every shard is done. Moving is
// idempotent (a deadline in [startedAt, endedAt) moves to ≥ endedAt, out of the range), so an end
// interrupted by a crash is finished by calling it again, by the operator or by a sweeper.
import type { Logger } from '../logger.ts';
import type { RedisClient } from '../redis/connection.ts';
import { shardKeys, type ShardRef } from '../stock/keys.ts';

export type OutageState = 'none' | 'active' | 'ending';

export interface OutageStatus {
  readonly state: OutageState;
  /** ms; set unless state is 'none'. */
  readonly startedAt?: number;
  /** ms; set when state is 'ending'. */
  readonly endedAt?: number;
}

export interface OutageEnded extends OutageStatus {
  /** Pending orders whose deadline this call moved (0 when another call had moved them). */
  readonly stretched: number;
}

export interface OutageEvents {
  onChanged(status: OutageStatus): void;
  onStretched(orders: number): void;
}

/** The switch's key: one per deployment (namespace), in a slot of its own. */
export const outageKey = (prefix: string) => `${prefix}:payment-outage`;

// KEYS[1] the switch. ARGV[1] nowMs. Starting an outage already on keeps its start; starting one
// while the last is still ending answers 'ending' (the caller finishes that first); 'started'
// when this call turned it on.
const START = `
local s = redis.call('HMGET', KEYS[1], 'state', 'startedAt', 'endedAt')
if s[1] == 'active' then return {'active', s[2]} end
if s[1] == 'ending' then return {'ending', s[2], s[3]} end
redis.call('HSET', KEYS[1], 'state', 'active', 'startedAt', ARGV[1], 'endedAt', '')
return {'started', ARGV[1]}`;

// KEYS[1] the switch. ARGV[1] nowMs. The first end fixes endedAt; later ends see the same.
const END = `
local s = redis.call('HMGET', KEYS[1], 'state', 'startedAt', 'endedAt')
if s[1] == 'active' then
  redis.call('HSET', KEYS[1], 'state', 'ending', 'endedAt', ARGV[1])
  return {'ending', s[2], ARGV[1]}
end
if s[1] == 'ending' then return {'ending', s[2], s[3]} end
return {'none'}`;

// KEYS[1] the switch. ARGV[1] the startedAt of the outage whose deadlines were all moved.
const FINISH = `
local s = redis.call('HMGET', KEYS[1], 'state', 'startedAt')
if s[1] == 'ending' and s[2] == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

// KEYS[1] the shard's deadlines, KEYS[2] its outbox, KEYS[3..] order records of the shard.
// ARGV[1] from, ARGV[2] to (ms; the outage), ARGV[3] by (to - from). A pending order whose
// deadline is in [from, to) gets deadline + by: record, deadlines score, the record's life
// (its TTL runs from the deadline), and its new state on the outbox. Returns how many moved.
const STRETCH = `
local from, to, by = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local moved = 0
for i = 3, #KEYS do
  local order = redis.call('HMGET', KEYS[i], 'id', 'status', 'expiresAt')
  local due = tonumber(order[3])
  if order[1] and order[2] == 'pending_payment' and due and due >= from and due < to then
    redis.call('HSET', KEYS[i], 'expiresAt', due + by)
    redis.call('ZADD', KEYS[1], due + by, order[1])
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl + by) end
    redis.call('XADD', KEYS[2], '*', unpack(redis.call('HGETALL', KEYS[i])))
    moved = moved + 1
  end
end
return moved`;

/** Orders per STRETCH call: bounds how long one call holds Redis. */
const STRETCH_BATCH = 200;

function statusOf(reply: unknown): OutageStatus {
  const [raw, startedAt, endedAt] = reply as [string, string?, string?];
  const state = raw === 'started' ? 'active' : raw;
  if (state !== 'active' && state !== 'ending') return { state: 'none' };
  return { state, startedAt: Number(startedAt), ...(state === 'ending' && { endedAt: Number(endedAt) }) };
}

export class PaymentOutage {
  private readonly key: string;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    /** Every stock shard of every live sale: where pending orders and their deadlines live. */
    private readonly liveShards: () => Promise<readonly ShardRef[]>,
    private readonly events: OutageEvents,
    private readonly logger: Logger,
  ) {
    this.key = outageKey(prefix);
  }

  async status(): Promise<OutageStatus> {
    const [state, startedAt, endedAt] = await this.redis.hmget(this.key, 'state', 'startedAt', 'endedAt');
    return statusOf([state, startedAt ?? undefined, endedAt ?? undefined]);
  }

  /** Whether lateness must not expire orders now: an outage on, or one whose deadlines are still being moved. */
  async paused(): Promise<boolean> {
    return (await this.status()).state !== 'none';
  }

  /** Turns the switch on (a no-op when on); an outage still ending is finished first. */
  async start(now = Date.now()): Promise<OutageStatus> {
    for (;;) {
      const reply = await this.redis.eval(START, 1, this.key, now);
      const status = statusOf(reply);
      if (status.state !== 'ending') {
        if ((reply as string[])[0] === 'started') {
          this.logger.warn({ event: 'payment_outage_started', startedAt: now }, 'payment outage: payment deadlines stop running');
          this.events.onChanged(status);
        }
        return status;
      }
      await this.finish(status);
    }
  }

  /** Turns the switch off: moves the deadlines that fell during the outage, then lets expiry resume.
   *  Safe to repeat (an interrupted end is finished), and a no-op when no outage is on. */
  async end(now = Date.now()): Promise<OutageEnded> {
    const status = statusOf(await this.redis.eval(END, 1, this.key, now));
    if (status.state === 'none') return { state: 'none', stretched: 0 };
    return this.finish(status);
  }

  private async finish(status: OutageStatus): Promise<OutageEnded> {
    const from = status.startedAt!;
    const to = status.endedAt!;
    let stretched = 0;
    for (const ref of await this.liveShards()) stretched += await this.stretchShard(ref, from, to);
    await this.redis.eval(FINISH, 1, this.key, from);
    this.events.onStretched(stretched);
    this.events.onChanged({ state: 'none' });
    this.logger.warn(
      { event: 'payment_outage_ended', startedAt: from, endedAt: to, stretchedBy: to - from, stretched },
      'payment outage over: deadlines that fell during it moved on by its length; expiry resumes',
    );
    return { ...status, stretched };
  }

  /** Moves one shard's deadlines in [from, to). Repeated until a pass moves nothing: an order
   *  leaving the deadlines meanwhile (paid, cancelled) must not make a pass skip another. */
  private async stretchShard(ref: ShardRef, from: number, to: number): Promise<number> {
    if (to <= from) return 0;
    const keys = shardKeys(this.prefix, ref.saleId, ref.sku, ref.shard);
    let total = 0;
    for (;;) {
      let pass = 0;
      let offset = 0;
      for (;;) {
        const ids = await this.redis.zrangebyscore(keys.deadlines, from, `(${to}`, 'LIMIT', offset, STRETCH_BATCH);
        if (ids.length === 0) break;
        const moved = Number(await this.redis.eval(STRETCH, 2 + ids.length, keys.deadlines, keys.outbox, ...ids.map((id) => keys.order(id)), from, to, to - from));
        pass += moved;
        // Moved ones left the range; those not moved (no longer pending) are stepped over.
        offset += ids.length - moved;
      }
      total += pass;
      if (pass === 0) return total;
    }
  }
}
