// Reading orders with read-your-writes: Redis holds the live record (its status changes land
// there first) until it expires after reaching Postgres; Postgres answers for the rest.
import type { RedisClient } from '../redis/connection.ts';
import { saleKeys } from '../stock/keys.ts';
import { isOrderId, orderFromHash, type Order } from './order.ts';
import type { OrderRepository } from './repository.ts';

const HISTORY_LIMIT = 200;

export class OrderStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    private readonly repository: OrderRepository,
    /** Sales whose orders may still be only in Redis; `fresh` skips any cache. */
    private readonly liveSaleIds: (options?: { fresh?: boolean }) => Promise<readonly string[]>,
  ) {}

  async fromRedis(saleId: string, orderId: string): Promise<Order | undefined> {
    return orderFromHash(await this.redis.hgetall(saleKeys(this.prefix, saleId).order(orderId)));
  }

  async find(orderId: string): Promise<Order | undefined> {
    return (await this.locate(orderId))?.order;
  }

  /** The order, and whether it came from Redis (its live record) or only from Postgres. */
  async locate(orderId: string): Promise<{ order: Order; inRedis: boolean } | undefined> {
    if (!isOrderId(orderId)) return undefined;
    const persisted = await this.repository.find(orderId);
    // Postgres's oversell guard refused it: whatever its Redis record still says, that is the truth.
    if (persisted?.status === 'rejected_oversell') return { order: persisted, inRedis: false };
    if (persisted) {
      const live = await this.fromRedis(persisted.saleId, orderId);
      return live ? { order: live, inRedis: true } : { order: persisted, inRedis: false };
    }
    // Not in Postgres yet: it can only be a recent order of a live sale, perhaps one created
    // (by another process) since this process last listed them.
    const cached = await this.liveSaleIds();
    const fresh = async () => (await this.liveSaleIds({ fresh: true })).filter((saleId) => !cached.includes(saleId));
    const found = (await this.findInSales(cached, orderId)) ?? (await this.findInSales(await fresh(), orderId));
    return found && { order: found, inRedis: true };
  }

  private async findInSales(saleIds: readonly string[], orderId: string): Promise<Order | undefined> {
    const candidates = await Promise.all(saleIds.map((saleId) => this.fromRedis(saleId, orderId)));
    return candidates.find((order) => order !== undefined);
  }

  /** The user's orders, newest first: those still in Redis merged over those in Postgres. */
  async listByUser(userId: string, saleId?: string): Promise<Order[]> {
    const saleIds = saleId ? [saleId] : await this.liveSaleIds();
    const [persisted, ...recentIds] = await Promise.all([
      this.repository.listByUser(userId, saleId, HISTORY_LIMIT),
      ...saleIds.map((id) => this.redis.zrevrange(saleKeys(this.prefix, id).userOrders(userId), 0, HISTORY_LIMIT - 1)),
    ]);
    const byId = new Map(persisted.map((order) => [order.id, order]));
    const recent = await Promise.all(
      saleIds.flatMap((id, index) => (recentIds[index] ?? []).map((orderId) => this.fromRedis(id, orderId))),
    );
    for (const order of recent) if (order) byId.set(order.id, order);
    return [...byId.values()].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1)).slice(0, HISTORY_LIMIT);
  }
}
