// The load scenarios (rush, sustained, soak) and the traffic they send: which SKU, which shopper,
// which Idempotency-Key, and when a request repeats an earlier one (a retry or a double click).
import { randomBytes } from 'node:crypto';
import { saleBody, type SaleItemInput } from '../tools/sale-body.ts';
import { tokens, type Tokens } from '../tools/tokens.ts';

export type ScenarioName = 'rush' | 'sustained' | 'soak';
export const SCENARIO_NAMES: readonly ScenarioName[] = ['rush', 'sustained', 'soak'];

/** A run may not last longer than this, whatever is asked (soak included). */
export const MAX_DURATION_SECONDS = 3600;

export interface Scenario {
  readonly description: string;
  readonly duration: number;
  readonly connections: number;
  /** Requests per second over all connections (autocannon overallRate); undefined = as fast as answered. */
  readonly rate: number | undefined;
  /** Share of fresh attempts aimed at the hot SKU; the rest spread evenly over the tail. */
  readonly hotShare: number;
  /** Units per SKU; undefined = enough that the run does not sell out (rate runs). */
  readonly stock: number | undefined;
}

export const SCENARIOS: Readonly<Record<ScenarioName, Scenario>> = {
  rush: {
    description: 'closed loop, as fast as answers come: one hot SKU (70% of attempts) and a long tail, sells out',
    duration: 10,
    connections: 50,
    rate: undefined,
    hotShare: 0.7,
    stock: 500,
  },
  sustained: {
    description: 'fixed request rate (autocannon overallRate), latency charged from the intended send time',
    duration: 30,
    connections: 50,
    rate: 1000,
    hotShare: 0.2,
    stock: undefined,
  },
  soak: {
    description: `long fixed-rate run (capped at ${MAX_DURATION_SECONDS} s) to show drift: memory, lag, latency creep`,
    duration: 300,
    connections: 20,
    rate: 300,
    hotShare: 0.2,
    stock: undefined,
  },
};

/** Share of requests that re-send an earlier keyed attempt unchanged (same user, key and body). */
export const REPEAT_SHARE = 0.1;
/** Share of fresh attempts that carry an Idempotency-Key. */
export const KEYED_SHARE = 0.8;
export const MAX_QUANTITY = 2;
const RECENT_KEYED = 512;

export const HOT_SKU = 'hot';
/** Stock 1, bought before the sold-out phase, so that phase meets a sold-out item for sure. */
export const SOLD_OUT_SKU = 'gone';
export const tailSku = (index: number) => `tail-${String(index + 1).padStart(3, '0')}`;

export interface SaleItemSpec extends SaleItemInput {
  readonly perUserLimit: number;
}

/** The stock level at or below which the item is delisted (as reserveOrder computes it). */
export function lowStockLevel(item: SaleItemSpec, restocked = 0): number | undefined {
  if (!item.lowStock) return undefined;
  if ('units' in item.lowStock) return item.lowStock.units;
  return Math.floor((item.lowStock.percent * (item.stock + restocked)) / 100);
}

/** Hot SKU, the tail (every fourth tail SKU with a low-stock rule, by percent or by units), and the sold-out probe. */
export function saleItems(skus: number, stock: number, perUserLimit: number): SaleItemSpec[] {
  const items: SaleItemSpec[] = [{ sku: HOT_SKU, stock, perUserLimit, lowStock: undefined }];
  for (let i = 0; i < skus - 1; i++) {
    const rule = i % 4 !== 3 ? undefined : i % 8 === 3 ? { percent: 20 } : { units: Math.ceil(stock / 10) };
    items.push({ sku: tailSku(i), stock, perUserLimit, lowStock: rule });
  }
  items.push({ sku: SOLD_OUT_SKU, stock: 1, perUserLimit, lowStock: undefined });
  return items;
}

/** The load test's sale: on from a minute ago until an hour after the run would end. */
export function loadSaleBody(saleId: string, items: readonly SaleItemSpec[], lastsSeconds: number) {
  return saleBody(
    items.map((item) => ({ ...item, unitPrice: 9900 })),
    {
      id: saleId,
      name: `Load test ${saleId}`,
      endsAt: new Date(Date.now() + (lastsSeconds + 3600) * 1000).toISOString(),
      // Long enough that nothing expires before the invariants are checked.
      paymentWindowSeconds: 6 * 3600,
    },
  );
}

/** The run's shoppers, each with a token minted up front, so the generator spends no time signing. */
export class Shoppers {
  readonly tokens: Tokens;
  readonly users: readonly { readonly id: string; readonly authorization: string }[];

  constructor(secret: string, users: number, tag: string) {
    this.tokens = tokens(secret);
    this.users = Array.from({ length: users }, (_, i) => {
      const id = `${tag}-u${i}`;
      return { id, authorization: this.tokens.shopper(id) };
    });
  }
}

export interface Attempt {
  readonly userId: string;
  readonly sku: string;
  readonly quantity: number;
  readonly key: string | undefined;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
  /** True when this request re-sends an earlier attempt unchanged. */
  readonly repeat: boolean;
}

export interface TrafficMix {
  /** Hot SKU first; the rest is the tail. */
  readonly skus: readonly string[];
  readonly hotShare: number;
  readonly repeatShare: number;
  readonly keyedShare: number;
  readonly maxQuantity: number;
}

/** Makes the next order attempt: a fresh one, or now and then a repeat of a recent keyed one. */
export class Traffic {
  readonly #recent: Attempt[] = [];
  #counter = 0;
  readonly #keyTag = randomBytes(4).toString('hex');

  constructor(
    private readonly mix: TrafficMix,
    private readonly shoppers: Shoppers,
    private readonly random: () => number = Math.random,
  ) {}

  next(): Attempt {
    const random = this.random;
    if (this.#recent.length > 0 && random() < this.mix.repeatShare) {
      const earlier = this.#recent[Math.floor(random() * this.#recent.length)];
      if (earlier) return { ...earlier, repeat: true };
    }
    const user = this.shoppers.users[Math.floor(random() * this.shoppers.users.length)];
    if (!user) throw new Error('no shoppers to send as');
    const sku = this.#pickSku();
    const quantity = 1 + Math.floor(random() * this.mix.maxQuantity);
    const key = random() < this.mix.keyedShare ? `k-${this.#keyTag}-${++this.#counter}` : undefined;
    const headers: Record<string, string> = { authorization: user.authorization, 'content-type': 'application/json' };
    if (key !== undefined) headers['idempotency-key'] = key;
    const attempt: Attempt = { userId: user.id, sku, quantity, key, body: JSON.stringify({ sku, quantity }), headers, repeat: false };
    if (key !== undefined) {
      if (this.#recent.length < RECENT_KEYED) this.#recent.push(attempt);
      else this.#recent[this.#counter % RECENT_KEYED] = attempt;
    }
    return attempt;
  }

  #pickSku(): string {
    const [hot, ...tail] = this.mix.skus;
    if (hot === undefined) throw new Error('no SKUs to order');
    if (tail.length === 0 || this.random() < this.mix.hotShare) return hot;
    return tail[Math.floor(this.random() * tail.length)] ?? hot;
  }
}
