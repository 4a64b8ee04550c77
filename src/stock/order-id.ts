// Order ids are UUIDv7s (the contract: UUIDs that sort by creation) whose last 32 bits name the
// hash tag of the stock shard that made them, so reading, paying or cancelling an order goes to
// its slot directly, without a scan. The uuidv7 package fills the 42 bits after the timestamp
// with a counter and random bits and the last 32 with random bits only, so overwriting those
// keeps ids ordered; 42 bits stay random or counted per ms per process. reserveOrder still
// refuses an id that already exists, so a collision is a retry, never a double write.
import { uuidv7 } from 'uuidv7';

const ORDER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A new order id for the shard whose tag is `tag`. */
export function mintOrderId(tag: number): string {
  return uuidv7().slice(0, -8) + tag.toString(16).padStart(8, '0');
}

/** The tag an order id carries; undefined for a string that is not a UUID. */
export function tagOfOrderId(orderId: string): number | undefined {
  if (!ORDER_ID.test(orderId)) return undefined;
  return Number.parseInt(orderId.slice(-8), 16);
}
