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
    const live = await this.fromRedis(orderId);
    if (live) return { order: live, inRedis: true };
    const persisted = await this.repository.find(orderId);
    return persisted && { order: persisted, inRedis: false };
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
