// Records what one phase sent and what came back: every answer by status and error code, every
// 201 in full (order id, user, SKU, quantity, replayed or not), the requests still unanswered when
// the phase stopped, each latency, and a per-second timeline of throughput and latency.
// Latencies go into HDR histograms (microseconds, 3 significant digits), whole-phase and per second.
import hdr, { type Histogram } from 'hdr-histogram-js';
import type { Attempt } from './scenarios.ts';

export interface AcceptedOrder {
  readonly orderId: string;
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly key: string | undefined;
  /** The answer carried `idempotent-replayed: true`. */
  readonly replayed: boolean;
}

export interface TimelinePoint {
  /** Seconds since the phase started. */
  readonly second: number;
  readonly answers: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface LatencySummary {
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

export interface Recording {
  readonly answers: number;
  readonly byStatus: Readonly<Record<string, number>>;
  readonly byCode: Readonly<Record<string, number>>;
  readonly orders: readonly AcceptedOrder[];
  /** Requests sent but never answered (cut off when the phase stopped, timed out, or lost with their connection). */
  readonly unanswered: readonly Attempt[];
  readonly latency: LatencySummary;
  readonly timeline: readonly TimelinePoint[];
}

/** One request on the wire: when it went out and when a fixed-rate schedule wanted it out. */
export interface Sent {
  readonly attempt: Attempt;
  readonly sentAt: number;
  readonly intendedAt: number;
}

const CODE = /"code"\s*:\s*"([A-Za-z0-9_]+)"/;

const round = (ms: number) => Math.round(ms * 100) / 100;

const histogram = (): Histogram => hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
const recordMs = (h: Histogram, ms: number) => h.recordValue(Math.max(1, Math.round(ms * 1000)));
const percentileMs = (h: Histogram, p: number) => (h.totalCount === 0 ? 0 : round(h.getValueAtPercentile(p) / 1000));

export class Recorder {
  readonly #inFlight = new Set<Sent>();
  readonly #byStatus = new Map<string, number>();
  readonly #byCode = new Map<string, number>();
  readonly #orders: AcceptedOrder[] = [];
  readonly #latencies = histogram();
  readonly #timeline: TimelinePoint[] = [];
  #second = 0;
  readonly #secondLatencies = histogram();

  constructor(private readonly startedAt: number) {}

  get answers(): number {
    return this.#latencies.totalCount;
  }

  /** Answers with a status in [from, to]. */
  count(from: number, to = from): number {
    let total = 0;
    for (const [status, n] of this.#byStatus) if (Number(status) >= from && Number(status) <= to) total += n;
    return total;
  }

  sent(sent: Sent): void {
    this.#inFlight.add(sent);
  }

  /** `now` and the Sent times share one clock (performance.now()). */
  answered(sent: Sent, status: number, body: string, replayed: boolean, now: number): void {
    this.#inFlight.delete(sent);
    // Charged from the earlier of "sent" and "should have been sent": a fixed-rate run that fell
    // behind its schedule counts the wait (no coordinated omission); a closed loop has no schedule.
    this.#latency(now - Math.min(sent.sentAt, sent.intendedAt), now);
    bump(this.#byStatus, String(status));
    if (status === 201) {
      this.#orders.push(parseOrder(sent.attempt, body, replayed));
    } else {
      const code = CODE.exec(body)?.[1];
      if (code !== undefined) bump(this.#byCode, code);
    }
  }

  finish(): Recording {
    // The last, partial second would show as a dip in throughput: keep it only when it is all there is.
    if (this.#timeline.length === 0) this.#flushSecond();
    const all = this.#latencies;
    return {
      answers: all.totalCount,
      byStatus: Object.fromEntries(this.#byStatus),
      byCode: Object.fromEntries(this.#byCode),
      orders: this.#orders,
      unanswered: [...this.#inFlight].map((sent) => sent.attempt),
      latency: {
        meanMs: all.totalCount === 0 ? 0 : round(all.mean / 1000),
        p50Ms: percentileMs(all, 50),
        p90Ms: percentileMs(all, 90),
        p99Ms: percentileMs(all, 99),
        p999Ms: percentileMs(all, 99.9),
        maxMs: all.totalCount === 0 ? 0 : round(all.maxValue / 1000),
      },
      timeline: this.#timeline,
    };
  }

  #latency(ms: number, now: number): void {
    recordMs(this.#latencies, ms);
    const second = Math.max(0, Math.floor((now - this.startedAt) / 1000));
    while (second > this.#second) this.#flushSecond();
    recordMs(this.#secondLatencies, ms);
  }

  #flushSecond(): void {
    const h = this.#secondLatencies;
    this.#timeline.push({ second: this.#second, answers: h.totalCount, p50Ms: percentileMs(h, 50), p99Ms: percentileMs(h, 99) });
    h.reset();
    this.#second++;
  }
}

function bump(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function parseOrder(attempt: Attempt, body: string, replayed: boolean): AcceptedOrder {
  const parsed = JSON.parse(body) as { orderId?: unknown; userId?: unknown; sku?: unknown; quantity?: unknown };
  return {
    orderId: String(parsed.orderId),
    // The answer's own fields, so a service that mixed orders up is caught by the invariants.
    userId: typeof parsed.userId === 'string' ? parsed.userId : attempt.userId,
    sku: typeof parsed.sku === 'string' ? parsed.sku : attempt.sku,
    quantity: typeof parsed.quantity === 'number' ? parsed.quantity : attempt.quantity,
    key: attempt.key,
    replayed,
  };
}
