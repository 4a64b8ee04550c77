// Reading orders with read-your-writes: Redis holds the live record (its status changes land
// there first) until it expires after reaching Postgres; Postgres answers for the rest.
// No read scans the live sales (layout 2): an order id carries its shard's hash tag, so its
// record is one HGETALL on its own slot (orderKeyOf), and a shopper's recent orders are listed by
// the shopper index userOrdersKey that the API writes after each accepted reserve.
import type { RedisClient } from '../redis/connection.ts';
import { orderKeyOf, userOrdersKey } from '../stock/keys.ts';
import { isOrderId, liveOrderFromHash, type LiveOrder, type Order } from './order.ts';
import type { OrderRepository } from './repository.ts';

const HISTORY_LIMIT = 200;
/** How long a live record's lookup waits for its row (a Postgres outage must not hold pay/cancel). */
const ROW_WAIT_MS = 250;

/** Where an order was found: its live Redis record (with its shard), or only Postgres. */
export type LocatedOrder = { readonly order: LiveOrder; readonly inRedis: true } | { readonly order: Order; readonly inRedis: false };

export class OrderStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly repository: OrderRepository,
  ) {}

  /** The order's live record: one read of the key its id names, undefined when Redis has none. */
  async fromRedis(orderId: string): Promise<LiveOrder | undefined> {
    const key = orderKeyOf(this.prefix, orderId);
    return key === undefined ? undefined : liveOrderFromHash(await this.redis.hgetall(key));
  }

  async find(orderId: string): Promise<Order | undefined> {
    return (await this.locate(orderId))?.order;
  }

  /** The order, and whether it came from Redis (its live record) or only from Postgres. */
  async locate(orderId: string): Promise<LocatedOrder | undefined> {
    if (!isOrderId(orderId)) return undefined;
    // Redis first: a live record is at least as new as its row (its changes land there first).
    // Postgres is read alongside (not after) the record: a live record may be behind its row in
    // one way (rejectedInPostgres), and the two reads in parallel cost one round trip's wait.
    const row = this.repository.find(orderId);
    row.catch(() => undefined); // awaited below; never left unhandled should Redis fail first
    const live = await this.fromRedis(orderId);
    if (live) return (await this.rejectedInPostgres(live, row)) ?? { order: live, inRedis: true };
    const persisted = await row;
    return persisted && { order: persisted, inRedis: false };
  }

  /**
   * The one way a live record can be behind its row: Postgres's oversell guard rejected the order
   * and turning the record into a rejection failed (src/orders/oversell-rejections.ts). Postgres's
   * word wins then, so a record still saying pending or paid is checked against its row (read by
   * primary key; with Postgres away or slower than ROW_WAIT_MS, the record answers).
   */
  private async rejectedInPostgres(live: LiveOrder, row: Promise<Order | undefined>): Promise<LocatedOrder | undefined> {
    if (live.status !== 'pending_payment' && live.status !== 'paid') return undefined;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ROW_WAIT_MS)));
    const persisted = await Promise.race([row.catch(() => undefined), late]).finally(() => clearTimeout(timer));
    return persisted?.status === 'rejected_oversell' ? { order: persisted, inRedis: false } : undefined;
  }

  /**
   * The user's orders, newest first: the shopper index's orders still in Redis merged over
   * those in Postgres. The index is written after the reserve (not atomically with it): an
   * order whose index write failed is listed once Postgres has it.
   */
  async listByUser(userId: string, saleId?: string): Promise<Order[]> {
    const [persisted, recentIds] = await Promise.all([
      this.repository.listByUser(userId, saleId, HISTORY_LIMIT),
      this.redis.zrevrange(userOrdersKey(this.prefix, userId), 0, HISTORY_LIMIT - 1),
    ]);
    const byId = new Map<string, Order>(persisted.map((order) => [order.id, order]));
    const recent = await Promise.all(recentIds.map((orderId) => this.fromRedis(orderId)));
    for (const order of recent) {
      // The index is the user's own, but trust only records that say so.
      if (order && order.userId === userId && (saleId === undefined || order.saleId === saleId)) byId.set(order.id, order);
    }
    return [...byId.values()].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1)).slice(0, HISTORY_LIMIT);
  }
}
