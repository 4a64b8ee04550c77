// The drill's rush: lanes of shoppers ordering back to back, every attempt with an Idempotency-Key,
// each answer recorded with the phase it fell in (before / during / after the fault). A request with
// no final answer (silence, 503) is retried with the same key, 250 ms apart, as a storefront client
// does, so a cut request either replays its order or is refused; only its final answer goes to the
// ledger (tools of the fault harness: placeOrder, Ledger, needsRetry).
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ledger, needsRetry, placeOrder, type OrderOutcome, type OrderRequest } from '../../test/integration/faults/harness.ts';
import { tokens } from '../tokens.ts';

/** How long a request keeps being retried (with its key) without a final answer. */
const RETRY_FOR_MS = 45_000;

export interface RushOptions {
  readonly skus: readonly string[];
  /** Parallel shoppers. Default 8. */
  readonly concurrency?: number;
  /** Pause after each final answer per lane. Default 5 ms. */
  readonly pauseMs?: number;
  /**
   * Every n-th request comes from one of a few "greedy" shoppers who keep ordering one unit, so
   * the per-user limit is exercised (and checked through Postgres). Default 4; 0 = none.
   */
  readonly greedyEvery?: number;
}

export interface AttemptRecord {
  /** When the attempt was sent, and the phase then: its answer is counted under that phase. */
  readonly sentMs: number;
  readonly phase: string;
  readonly answeredMs: number;
  readonly label: string;
}

const RETRY_PAUSE_MS = 250;
const GREEDY_SHOPPERS = 12;

/** "201", "201 replayed", "503 SALE_RECOVERING", "no answer (refused)", "no answer (cut)". */
export function answerLabel(outcome: OrderOutcome): string {
  if (outcome.kind === 'accepted') return outcome.replayed ? '201 replayed' : '201';
  if (outcome.kind === 'refused') return `${outcome.status} ${outcome.code}`;
  return outcome.reached ? `no answer (cut: ${outcome.error})` : 'no answer (connection refused)';
}

export class Rush {
  /** Label of the current phase; each attempt is counted under the phase it was sent in. */
  phase = 'before';
  readonly ledger = new Ledger();
  readonly attempts: AttemptRecord[] = [];
  /** Requests still without a final answer when their retries ran out. */
  readonly unanswered: OrderRequest[] = [];
  #stopping = false;
  #lanes: Promise<void> | undefined;
  #counter = 0;
  readonly #tag = randomBytes(3).toString('hex');
  readonly #sign: ReturnType<typeof tokens>;
  readonly #firstAcceptedIn = new Map<string, number>();
  /** Order id → when the attempt that made it was sent. */
  readonly #madeAt = new Map<string, number>();
  /** Each attempt awaiting its answer, with when it was sent (an entry per attempt: two can share a millisecond). */
  readonly #inFlight = new Set<{ readonly sentMs: number }>();

  constructor(
    private readonly baseUrl: () => string,
    private readonly saleId: string,
    secret: string,
    private readonly now: () => number,
    private readonly options: RushOptions,
  ) {
    this.#sign = tokens(secret);
  }

  start(): void {
    if (this.#lanes !== undefined) throw new Error('the rush already started');
    const lanes = Array.from({ length: this.options.concurrency ?? 8 }, () => this.#lane());
    this.#lanes = Promise.all(lanes).then(() => undefined);
  }

  /** Stops taking new requests and waits until every request in flight has its final answer. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#lanes;
  }

  /** Answers counted by label, per phase. */
  answersByPhase(): Record<string, Record<string, number>> {
    const byPhase: Record<string, Record<string, number>> = {};
    for (const { phase, label } of this.attempts) {
      const counts = (byPhase[phase] ??= {});
      counts[label] = (counts[label] ?? 0) + 1;
    }
    return byPhase;
  }

  /** The longest an attempt waited for its answer (or silence), per phase. */
  slowestByPhase(): Record<string, number> {
    const slowest: Record<string, number> = {};
    for (const { phase, sentMs, answeredMs } of this.attempts) slowest[phase] = Math.max(slowest[phase] ?? 0, answeredMs - sentMs);
    return slowest;
  }

  /** Resolves once every attempt sent before `ms` has its answer (or the time is up). */
  async waitAnswered(ms: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ([...this.#inFlight].some((attempt) => attempt.sentMs < ms) && Date.now() < deadline) await sleep(10);
  }

  /** Orders whose making attempt was sent before `ms`: decided before then. */
  madeBefore(ms: number): string[] {
    return this.madeBetween(0, ms);
  }

  /** Orders whose making attempt was sent in [fromMs, toMs). */
  madeBetween(fromMs: number, toMs: number): string[] {
    return [...this.#madeAt].filter(([, sentMs]) => sentMs >= fromMs && sentMs < toMs).map(([id]) => id);
  }

  /** When the first new 201 to an attempt sent in `phase` was answered (undefined: none yet). */
  firstAcceptedIn(phase: string): number | undefined {
    return this.#firstAcceptedIn.get(phase);
  }

  /** Resolves once a new 201 has been answered in `phase`; the time it was. */
  async waitForAcceptedIn(phase: string, timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.firstAcceptedIn(phase) === undefined && Date.now() < deadline) await sleep(20);
    return this.firstAcceptedIn(phase);
  }

  /** Resolves once at least `count` orders were accepted. */
  async waitForAccepted(count: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.ledger.accepted.size < count) {
      if (Date.now() > deadline) throw new Error(`the rush had only ${this.ledger.accepted.size} of ${count} orders accepted after ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  #nextRequest(): OrderRequest {
    const n = ++this.#counter;
    const skus = this.options.skus;
    const sku = skus[n % skus.length]!;
    const greedyEvery = this.options.greedyEvery ?? 4;
    const greedy = greedyEvery > 0 && n % greedyEvery === 0;
    const userId = greedy ? `greedy-${this.#tag}-${(n / greedyEvery) % GREEDY_SHOPPERS}` : `u-${this.#tag}-${n}`;
    return {
      key: `k-${this.#tag}-${n}`,
      userId,
      sku,
      // Quantity alternates independently of the SKU (n % 2 picks the SKU when there are two).
      quantity: greedy ? 1 : 1 + (Math.floor(n / skus.length) % 2),
      authorization: this.#sign.shopper(userId),
    };
  }

  async #lane(): Promise<void> {
    while (!this.#stopping) {
      const request = this.#nextRequest();
      const firstTry = Date.now();
      let outcome = await this.#attempt(request);
      while (needsRetry(outcome) && Date.now() - firstTry < RETRY_FOR_MS) {
        await sleep(RETRY_PAUSE_MS);
        outcome = await this.#attempt(request);
      }
      if (needsRetry(outcome)) this.unanswered.push(request);
      else this.ledger.record(request, outcome);
      await sleep(this.options.pauseMs ?? 5);
    }
  }

  async #attempt(request: OrderRequest): Promise<OrderOutcome> {
    const phase = this.phase;
    const sentMs = this.now();
    const inFlight = { sentMs };
    this.#inFlight.add(inFlight);
    const outcome = await placeOrder(this.baseUrl(), this.saleId, request, 10_000).finally(() => this.#inFlight.delete(inFlight));
    const answeredMs = this.now();
    this.attempts.push({ sentMs, phase, answeredMs, label: answerLabel(outcome) });
    if (outcome.kind === 'accepted' && !outcome.replayed) {
      if (!this.#madeAt.has(outcome.orderId)) this.#madeAt.set(outcome.orderId, sentMs);
      if (!this.#firstAcceptedIn.has(phase)) this.#firstAcceptedIn.set(phase, answeredMs);
    }
    return outcome;
  }
}
