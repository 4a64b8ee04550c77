// Redis key names. Every key of a sale carries the sale id as its hash tag, so each script
// touches one slot and runs unchanged on Redis Cluster. Keys are built here, never in Lua.
// Every caller-chosen part (user id, idempotency key, and for consistency sale id, SKU, order id)
// is encoded with encodeKeyPart, so no part can contain ':' (two users, or a user and a key,
// can never join into the same name) nor '{' / '}' (the sale's tag stays the first one).
export interface SaleKeys {
  readonly sale: string;
  readonly outbox: string;
  readonly deadlines: string;
  /** Which expiry sweeper works the sale's deadlines for now (a short lease). */
  readonly sweepLease: string;
  item(sku: string): string;
  users(sku: string): string;
  idempotency(userId: string, key: string): string;
  order(orderId: string): string;
  userOrders(userId: string): string;
  /** The user's order attempts on the item in one clock second (ms since the epoch ÷ 1000, floored). */
  attempts(sku: string, userId: string, second: number): string;
}

// Left as they are: what ids are made of in practice, so keys stay readable.
const PLAIN = /^[A-Za-z0-9_.~-]$/;
// Every part of every order attempt is encoded: the common all-plain part is answered by one
// test of the whole string instead of one per character (measured: most of this module's time).
const ALL_PLAIN = /^[A-Za-z0-9_.~-]*$/;

function percentByte(byte: number): string {
  return `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
}

/**
 * An injective encoding of one caller-chosen part: letters, digits and `_.~-` as they are, every
 * other character as the %XX of its UTF-8 bytes (a lone surrogate, which UTF-8 cannot carry, as
 * %uXXXX). The result never holds ':', '{', '}' or a bare '%', and two parts encode alike only
 * when they are equal.
 */
export function encodeKeyPart(part: string): string {
  if (ALL_PLAIN.test(part)) return part;
  let encoded = '';
  for (const char of part) {
    const code = char.codePointAt(0) ?? 0;
    if (PLAIN.test(char)) encoded += char;
    else if (code >= 0xd800 && code <= 0xdfff) encoded += `%u${code.toString(16).toUpperCase()}`;
    else for (const byte of Buffer.from(char, 'utf8')) encoded += percentByte(byte);
  }
  return encoded;
}

export function saleKeys(prefix: string, saleId: string): SaleKeys {
  const base = `${prefix}:{${encodeKeyPart(saleId)}}`;
  const enc = encodeKeyPart;
  return {
    sale: `${base}:sale`,
    outbox: `${base}:outbox`,
    deadlines: `${base}:deadlines`,
    sweepLease: `${base}:sweep-lease`,
    item: (sku) => `${base}:item:${enc(sku)}`,
    users: (sku) => `${base}:users:${enc(sku)}`,
    idempotency: (userId, key) => `${base}:idem:${enc(userId)}:${enc(key)}`,
    order: (orderId) => `${base}:order:${enc(orderId)}`,
    userOrders: (userId) => `${base}:user-orders:${enc(userId)}`,
    attempts: (sku, userId, second) => `${base}:attempts:${enc(sku)}:${enc(userId)}:${second}`,
  };
}

/** Pub/sub channel on which stock reopenings (restock, relist, release) are announced. */
export const stockEventsChannel = (prefix: string) => `${prefix}:stock-events`;
