// Model-based property test of the order lifecycle against real Redis: random sequences of
// reserves, payments, cancels, expiries (on a simulated clock), restocks, delists and relists,
// each compared after every step with a small in-memory model of stock, per-user limits, item
// state (the low-stock rule included) and releases, which must each happen exactly once.
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/logger.ts';
import { ExpirySweeper } from '../../../src/orders/expiry-sweeper.ts';
import type { LifecycleEvents, LifecycleOutcome, OrderLifecycle } from '../../../src/orders/lifecycle.ts';
import type { OrderStatus } from '../../../src/orders/order.ts';
import type { SaleCatalog } from '../../../src/sales/catalog.ts';
import { itemState, type DelistReason, type ItemState, type LowStockRule } from '../../../src/sales/sale.ts';
import { ClosedItems } from '../../../src/stock/closed-items.ts';
import { shardKeys } from '../../../src/stock/keys.ts';
import { Reservations, type Reservation } from '../../../src/orders/reservations.ts';
import type { Scripts } from '../../../src/stock/scripts/registry.ts';
import type { TestContext } from '../../support/context.ts';
import { luaFixture } from '../../support/lua-fixtures.ts';

const SKU = 'phone-x';
const START = Math.floor(Date.now() / 1000) * 1000;
const PAYMENT_WINDOW_MS = 60_000;
const USERS = ['u-0', 'u-1', 'u-2', 'u-3'] as const;
const NUM_RUNS = 100;

// ---------------------------------------------------------------------------------------------
// Actions

type Action =
  | { readonly kind: 'reserve'; readonly user: number; readonly quantity: number; readonly key: string | null }
  | { readonly kind: 'pay'; readonly pick: number; readonly ref: string; readonly stranger: boolean }
  | { readonly kind: 'cancel'; readonly pick: number; readonly stranger: boolean }
  /** Moves the simulated clock; then the sweeper, the lifecycle per order, or nobody expires what is due. */
  | { readonly kind: 'advance'; readonly ms: number; readonly via: 'sweeper' | 'lifecycle' | 'none' }
  | { readonly kind: 'restock'; readonly quantity: number }
  | { readonly kind: 'delist' }
  | { readonly kind: 'relist' };

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('reserve' as const),
      user: fc.integer({ min: 0, max: USERS.length - 1 }),
      quantity: fc.integer({ min: 1, max: 3 }),
      key: fc.option(fc.constantFrom('k-a', 'k-b'), { nil: null }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('pay' as const),
      pick: fc.nat(),
      ref: fc.constantFrom('ref-a', 'ref-b'),
      stranger: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat(), stranger: fc.constant(false) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat(), stranger: fc.constant(true) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 90_000 }), fc.constant(PAYMENT_WINDOW_MS)),
      via: fc.constantFrom('sweeper' as const, 'lifecycle' as const, 'none' as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restock' as const), quantity: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delist' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('relist' as const) }) },
);

interface Scenario {
  readonly stock: number;
  readonly perUserLimit: number;
  readonly lowStock: LowStockRule | undefined;
  readonly actions: readonly Action[];
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  stock: fc.integer({ min: 2, max: 12 }),
  perUserLimit: fc.integer({ min: 1, max: 4 }),
  lowStock: fc.oneof(
    fc.constant(undefined),
    fc.record({ units: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ percent: fc.integer({ min: 10, max: 50 }) }),
  ),
  actions: fc.array(actionArb, { minLength: 5, maxLength: 40, size: 'max' }),
});

// ---------------------------------------------------------------------------------------------
// The model

interface ModelOrder {
  readonly id: string;
  readonly userId: string;
  readonly quantity: number;
  readonly expiresAt: number;
  status: OrderStatus;
  paymentRef?: string;
}

type ExpectedReserve = 'accepted' | `replayed:${string}` | `refused:${string}`;

class Model {
  available: number;
  total: number;
  delisted: DelistReason | null;
  readonly live = new Map<string, number>();
  readonly orders: ModelOrder[] = [];
  readonly keys = new Map<string, { orderId: string; quantity: number }>();
  /** Released orders and why; each must be reported by the lifecycle exactly once. */
  readonly releases = new Map<string, 'cancelled' | 'expired'>();
  reopenings = 0;
  outboxEntries = 0;

  constructor(
    stock: number,
    readonly perUserLimit: number,
    private readonly lowStock: LowStockRule | undefined,
  ) {
    this.available = stock;
    this.total = stock;
    this.delisted = this.atOrBelowLow(stock) ? 'low_stock' : null;
  }

  atOrBelowLow(units: number): boolean {
    if (!this.lowStock) return false;
    if ('units' in this.lowStock) return units <= this.lowStock.units;
    return units * 100 <= this.lowStock.percent * this.total;
  }

  liveQuantity(): number {
    return this.orders.filter((o) => o.status === 'pending_payment' || o.status === 'paid').reduce((sum, o) => sum + o.quantity, 0);
  }

  state(): ItemState {
    return itemState({ available: this.available, delisted: this.delisted });
  }

  /** What reserveOrder must answer, in its documented order of checks. */
  expectReserve(userId: string, quantity: number, key: string | null): ExpectedReserve {
    const prior = key === null ? undefined : this.keys.get(`${userId}|${key}`);
    if (prior && prior.quantity === quantity) return `replayed:${prior.orderId}`;
    if (this.delisted !== null) return 'refused:ITEM_DELISTED';
    if (this.available <= 0) return 'refused:SOLD_OUT';
    if (this.available < quantity) return 'refused:INSUFFICIENT_STOCK';
    if ((this.live.get(userId) ?? 0) + quantity > this.perUserLimit) return 'refused:PER_USER_LIMIT_EXCEEDED';
    if (prior) return 'refused:IDEMPOTENCY_KEY_REUSED';
    return 'accepted';
  }

  accept(order: ModelOrder, key: string | null): void {
    const before = this.available;
    this.available -= order.quantity;
    this.live.set(order.userId, (this.live.get(order.userId) ?? 0) + order.quantity);
    this.orders.push(order);
    if (key !== null) this.keys.set(`${order.userId}|${key}`, { orderId: order.id, quantity: order.quantity });
    // The rule fires only when stock falls to the level from above it.
    if (this.atOrBelowLow(this.available) && !this.atOrBelowLow(before)) this.delisted = 'low_stock';
    this.outboxEntries++;
  }

  release(order: ModelOrder, reason: 'cancelled' | 'expired'): void {
    const before = this.available;
    this.available += order.quantity;
    const left = (this.live.get(order.userId) ?? 0) - order.quantity;
    if (left > 0) this.live.set(order.userId, left);
    else this.live.delete(order.userId);
    order.status = reason;
    this.releases.set(order.id, reason);
    if (before === 0 && this.delisted === null) this.reopenings++;
    this.outboxEntries++;
  }

  pay(order: ModelOrder, ref: string): void {
    order.status = 'paid';
    order.paymentRef = ref;
    this.outboxEntries++;
  }

  restock(quantity: number): boolean {
    this.available += quantity;
    this.total += quantity;
    if (this.delisted === 'low_stock' && !this.atOrBelowLow(this.available)) {
      this.delisted = null;
      return true;
    }
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The system under test

const lua = luaFixture({ now: START, salePrefix: 'model', postgres: true });
let ctx: TestContext;
let prefix: string;
let redis: Redis;
let scripts: Scripts;
let catalog: SaleCatalog;
let reservations: Reservations;
let lifecycle: OrderLifecycle;
let sweeper: ExpirySweeper;
let currentSaleId = '';
let saleCounter = 0;

/** What the lifecycle reported, over every run (order ids are unique). */
const reportedReleases = new Map<string, ('cancelled' | 'expired')[]>();
let reportedReopenings = 0;

const events: LifecycleEvents = {
  onReleased({ orderIds }, reason) {
    for (const id of orderIds) reportedReleases.set(id, [...(reportedReleases.get(id) ?? []), reason]);
  },
  onPaid() {},
  async onReopened() {
    reportedReopenings++;
  },
};

beforeAll(async () => {
  ({ ctx, prefix, redis, scripts, catalog } = await lua.open());
  // No in-process sold-out memory: the model is about what Redis decides.
  reservations = new Reservations(scripts, { closedItems: new ClosedItems(0) });
  // Key layout 2: the model's item has one stock shard.
  const liveShards = async () => [{ saleId: currentSaleId, sku: SKU, shard: 0, shards: 1 }];
  lifecycle = lua.lifecycleOn(redis, events);
  sweeper = new ExpirySweeper(redis, lifecycle, prefix, liveShards, createLogger(ctx.config));
});

afterAll(() => lua.close());

function summary(outcome: LifecycleOutcome): string {
  return outcome.kind === 'done' ? `done:${outcome.order.status}:${String(outcome.changed)}` : `refused:${outcome.code}`;
}

function reservationSummary(result: Reservation): string {
  if (result.kind === 'accepted') return 'accepted';
  if (result.kind === 'replayed') return `replayed:${result.orderId}`;
  if (result.kind === 'unacknowledged') return `unacknowledged:${result.orderId}`;
  return `refused:${result.code}`;
}

/** Runs one action against Redis and the model, checking the answer it gets. */
async function step(model: Model, action: Action, clock: { now: number }, where: string): Promise<void> {
  const saleId = currentSaleId;
  switch (action.kind) {
    case 'reserve': {
      const userId = USERS[action.user] ?? 'u-0';
      const expected = model.expectReserve(userId, action.quantity, action.key);
      const result = await reservations.reserve({ saleId, sku: SKU, userId, quantity: action.quantity, idempotencyKey: action.key ?? undefined }, clock.now);
      expect(reservationSummary(result), where).toBe(expected);
      if (result.kind === 'accepted') {
        expect(result.order.expiresAt, where).toBe(clock.now + PAYMENT_WINDOW_MS);
        model.accept({ id: result.order.id, userId, quantity: action.quantity, expiresAt: result.order.expiresAt, status: 'pending_payment' }, action.key);
        expect(result.availableAfter, where).toBe(model.available);
      }
      return;
    }
    case 'pay': {
      const order = model.orders[action.pick % Math.max(1, model.orders.length)];
      if (!order) {
        expect(summary(await lifecycle.pay('0190d6a4-0000-7000-8000-000000000000', 'u-0', action.ref, clock.now)), where).toBe('refused:ORDER_NOT_FOUND');
        return;
      }
      let expected: string;
      if (action.stranger) expected = 'refused:ORDER_NOT_FOUND';
      else if (order.status === 'paid') expected = order.paymentRef === action.ref ? 'done:paid:false' : 'refused:ORDER_ALREADY_PAID';
      else if (order.status === 'cancelled') expected = 'refused:ORDER_CANCELLED';
      else if (order.status === 'expired') expected = 'refused:ORDER_EXPIRED';
      else if (clock.now >= order.expiresAt) {
        // Late payment: the order expires here and its stock comes back.
        model.release(order, 'expired');
        expected = 'refused:ORDER_EXPIRED';
      } else {
        model.pay(order, action.ref);
        expected = 'done:paid:true';
      }
      const outcome = await lifecycle.pay(order.id, action.stranger ? 'stranger' : order.userId, action.ref, clock.now);
      expect(summary(outcome), where).toBe(expected);
      return;
    }
    case 'cancel': {
      const order = model.orders[action.pick % Math.max(1, model.orders.length)];
      if (!order) return;
      let expected: string;
      if (action.stranger) expected = 'refused:ORDER_NOT_FOUND';
      else if (order.status === 'paid') expected = 'refused:ORDER_ALREADY_PAID';
      else if (order.status === 'cancelled') expected = 'done:cancelled:false';
      else if (order.status === 'expired') expected = 'refused:ORDER_EXPIRED';
      else if (clock.now >= order.expiresAt) {
        // A cancel at or after the deadline expires the order instead.
        model.release(order, 'expired');
        expected = 'refused:ORDER_EXPIRED';
      } else {
        model.release(order, 'cancelled');
        expected = 'done:cancelled:true';
      }
      const got = summary(await lifecycle.cancel(order.id, action.stranger ? 'stranger' : order.userId, clock.now));
      expect(got, where).toBe(expected);
      return;
    }
    case 'advance': {
      clock.now += action.ms;
      // Nobody sweeps: later payments and cancels meet orders past their deadline.
      if (action.via === 'none') return;
      if (action.via === 'sweeper') {
        const due = model.orders.filter((o) => o.status === 'pending_payment' && o.expiresAt <= clock.now);
        for (const order of due) model.release(order, 'expired');
        expect(await sweeper.runOnce(clock.now), where).toBe(due.length);
        return;
      }
      // The lifecycle's batch expiry, handed one order at a time: only a due pending one expires.
      for (const order of model.orders) {
        let expected = 0;
        if (order.status === 'pending_payment' && order.expiresAt <= clock.now) {
          model.release(order, 'expired');
          expected = 1;
        }
        const { expired } = await lifecycle.expireDue({ saleId, sku: SKU, shard: 0 }, [order.id], clock.now);
        expect(expired.length, `${where} order ${order.id}`).toBe(expected);
      }
      return;
    }
    case 'restock': {
      const relisted = model.restock(action.quantity);
      expect(await catalog.restock(saleId, SKU, action.quantity), where).toEqual({ ok: true, available: model.available, relisted });
      return;
    }
    case 'delist':
      model.delisted = 'operator';
      expect(await catalog.delist(saleId, SKU, clock.now), where).toEqual({ ok: true });
      return;
    case 'relist':
      model.delisted = null;
      expect(await catalog.relist(saleId, SKU), where).toEqual({ ok: true, available: model.available, relisted: true });
      return;
  }
}

/** Compares everything Redis holds for the sale with the model, and checks the invariants. */
async function compare(model: Model, where: string): Promise<void> {
  const keys = shardKeys(prefix, currentSaleId, SKU, 0);
  const [item, users, deadlines, outboxLength, statuses] = await Promise.all([
    redis.hmget(keys.item, 'available', 'total', 'delisted'),
    redis.hgetall(keys.users),
    redis.zrange(keys.deadlines, 0, -1),
    redis.xlen(keys.outbox),
    Promise.all(model.orders.map((order) => redis.hget(keys.order(order.id), 'status'))),
  ]);
  const available = Number(item[0]);
  const total = Number(item[1]);
  const delisted = item[2] ? item[2] : null;

  // Invariant 1: available = initial + restocks − live quantity, never negative.
  expect(available, where).toBeGreaterThanOrEqual(0);
  expect(available, where).toBe(total - model.liveQuantity());
  expect({ available, total, delisted }, where).toEqual({ available: model.available, total: model.total, delisted: model.delisted });
  expect(itemState({ available, delisted: delisted as DelistReason | null }), where).toBe(model.state());

  // Invariant 2: per-user live quantity within the limit; the hash drops users at 0.
  const expectedUsers = Object.fromEntries([...model.live].map(([user, quantity]) => [user, String(quantity)]));
  expect(users, where).toEqual(expectedUsers);
  for (const quantity of Object.values(users)) expect(Number(quantity), where).toBeLessThanOrEqual(model.perUserLimit);

  // Every order in the state the model says; only pending ones await a deadline.
  expect(statuses, where).toEqual(model.orders.map((order) => order.status));
  const pending = model.orders.filter((order) => order.status === 'pending_payment').map((order) => order.id);
  expect([...deadlines].sort(), where).toEqual([...pending].sort());

  // Invariant 5: each cancelled or expired order was released exactly once, for its reason.
  for (const order of model.orders) {
    const reason = model.releases.get(order.id);
    expect(reportedReleases.get(order.id) ?? [], `${where}: releases of ${order.id}`).toEqual(reason ? [reason] : []);
  }
  expect(reportedReopenings, where).toBe(model.reopenings);

  // One outbox entry per change: accepted, paid, released.
  expect(outboxLength, where).toBe(model.outboxEntries);
}

async function run(scenario: Scenario): Promise<void> {
  currentSaleId = `model-${++saleCounter}`;
  reportedReopenings = 0;
  const clock = { now: START };
  const loaded = await catalog.load(
    {
      id: currentSaleId,
      name: 'Model sale',
      startsAt: START - 60_000,
      endsAt: START + 24 * 3_600_000,
      currency: 'CNY',
      paymentWindowSeconds: PAYMENT_WINDOW_MS / 1000,
      items: [{ sku: SKU, name: 'Phone X', unitPrice: 100, stock: scenario.stock, perUserLimit: scenario.perUserLimit, lowStock: scenario.lowStock }],
    },
    START - 60_000,
  );
  expect(loaded).toBe(true);
  const model = new Model(scenario.stock, scenario.perUserLimit, scenario.lowStock);
  await compare(model, `${currentSaleId} after load`);
  for (const [index, action] of scenario.actions.entries()) {
    const where = `${currentSaleId} step ${index} ${JSON.stringify(action)} at +${clock.now - START}ms`;
    await step(model, action, clock, where);
    await compare(model, where);
  }
}

describe('the order lifecycle against a model', () => {
  it('when random reserves, payments, cancels, expiries, restocks, delists and relists run, then Redis matches the model after every step', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb, run), { numRuns: NUM_RUNS });
  });

  it('when a fixed sequence crosses the low-stock level, releases above it, pays and cancels late and expires twice, then Redis matches the model', async () => {
    await run({
      stock: 6,
      perUserLimit: 3,
      lowStock: { units: 2 },
      actions: [
        { kind: 'reserve', user: 0, quantity: 3, key: 'k-a' },
        // 3 → 2: the rule fires at the level.
        { kind: 'reserve', user: 1, quantity: 1, key: null },
        // A replay wins over the delist; a new order does not.
        { kind: 'reserve', user: 0, quantity: 3, key: 'k-a' },
        { kind: 'reserve', user: 2, quantity: 1, key: null },
        // Released stock lifts available above the level; the item stays delisted.
        { kind: 'cancel', pick: 1, stranger: false },
        { kind: 'reserve', user: 2, quantity: 1, key: null },
        // A restock above the level lifts the low-stock delist, and the rule fires again later.
        { kind: 'restock', quantity: 1 },
        { kind: 'reserve', user: 3, quantity: 2, key: 'k-b' },
        // Past every deadline, with no sweeper: a late payment and a late cancel each expire one.
        { kind: 'advance', ms: PAYMENT_WINDOW_MS, via: 'none' },
        { kind: 'pay', pick: 2, ref: 'ref-a', stranger: false },
        { kind: 'cancel', pick: 0, stranger: false },
        { kind: 'pay', pick: 0, ref: 'ref-a', stranger: false },
        { kind: 'advance', ms: 1, via: 'lifecycle' },
        { kind: 'advance', ms: 1, via: 'sweeper' },
        { kind: 'relist' },
        { kind: 'delist' },
        { kind: 'restock', quantity: 2 },
        { kind: 'reserve', user: 3, quantity: 1, key: null },
      ],
    });
  });
});
