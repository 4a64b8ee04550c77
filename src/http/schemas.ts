// TypeBox schemas of the HTTP contract (API.md): request bodies, params and every response.
import { Type, type Static } from 'typebox';
import { MAX_ITEM_STOCK, MAX_ORDER_QUANTITY, MAX_STOCK_SHARDS, MAX_UNIT_PRICE } from '../sales/sale.ts';
import { SAFE_TEXT_PATTERN } from '../text.ts';

const IDENTIFIER = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
export const Identifier = Type.String({ pattern: IDENTIFIER, description: 'client-chosen id' });
export const Timestamp = Type.String({ format: 'date-time', description: 'ISO-8601 in UTC' });
const Money = Type.Integer({ minimum: 0, maximum: MAX_UNIT_PRICE, description: 'minor units (fen / cents)' });
/** Free text a caller chooses (names, references): no control characters, no lone surrogates. */
const SafeText = (minLength: number, maxLength: number) =>
  Type.String({ minLength, maxLength, pattern: SAFE_TEXT_PATTERN, description: 'no control characters or lone surrogates' });
const StockUnits = Type.Integer({ minimum: 0, maximum: MAX_ITEM_STOCK });

export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String(),
});

export const SaleParams = Type.Object({ saleId: Identifier }, { additionalProperties: false });
export const ItemParams = Type.Object({ saleId: Identifier, sku: Identifier }, { additionalProperties: false });
// Any id is accepted here: one that is not a known order is 404 ORDER_NOT_FOUND, as the contract says.
export const OrderParams = Type.Object({ orderId: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false });

const OrderStatusSchema = Type.Union([
  Type.Literal('pending_payment'),
  Type.Literal('paid'),
  Type.Literal('cancelled'),
  Type.Literal('expired'),
  Type.Literal('rejected_oversell'),
]);

export const OrderBody = Type.Object({
  orderId: Type.String(),
  saleId: Type.String(),
  sku: Type.String(),
  userId: Type.String(),
  quantity: Type.Integer(),
  unitPrice: Type.Integer(),
  amount: Type.Integer(),
  status: OrderStatusSchema,
  createdAt: Timestamp,
  expiresAt: Timestamp,
  paidAt: Type.Optional(Timestamp),
  cancelledAt: Type.Optional(Timestamp),
  expiredAt: Type.Optional(Timestamp),
  rejectedAt: Type.Optional(Timestamp),
});
export type OrderBodyType = Static<typeof OrderBody>;

export const ReserveBody = Type.Object(
  {
    sku: Identifier,
    quantity: Type.Integer({ minimum: 1, maximum: MAX_ORDER_QUANTITY }),
  },
  { additionalProperties: false },
);

export const PaymentBody = Type.Object({ paymentRef: SafeText(1, 128) }, { additionalProperties: false });

export const ReserveHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ pattern: '^[\\x20-\\x7e]{1,128}$' })),
});

export const ItemView = Type.Object({
  sku: Type.String(),
  name: Type.String(),
  unitPrice: Type.Integer(),
  perUserLimit: Type.Integer(),
  available: Type.Integer(),
  state: Type.Union([Type.Literal('listed'), Type.Literal('delisted'), Type.Literal('sold_out')]),
});

export const SaleView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  status: Type.Union([Type.Literal('scheduled'), Type.Literal('active'), Type.Literal('ended'), Type.Literal('closed')]),
  startsAt: Timestamp,
  endsAt: Timestamp,
  serverTime: Timestamp,
  currency: Type.String(),
  items: Type.Array(ItemView),
});

const LowStock = Type.Union([
  Type.Object({ percent: Type.Number({ minimum: 0, maximum: 100 }) }, { additionalProperties: false }),
  Type.Object({ units: StockUnits }, { additionalProperties: false }),
]);

const CreateSaleItem = Type.Object(
  {
    sku: Identifier,
    name: SafeText(1, 200),
    unitPrice: Money,
    stock: StockUnits,
    perUserLimit: Type.Integer({ minimum: 1, maximum: MAX_ORDER_QUANTITY }),
    lowStock: Type.Optional(LowStock),
    stockShards: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_STOCK_SHARDS, description: 'K: stock shards, each in its own Redis slot, for a hot item (fixed at creation; default 1)' }),
    ),
  },
  { additionalProperties: false },
);

export const CreateSaleBody = Type.Object(
  {
    id: Identifier,
    name: SafeText(1, 200),
    startsAt: Timestamp,
    endsAt: Timestamp,
    currency: Type.String({ pattern: '^[A-Z]{3}$' }),
    paymentWindowSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 24 * 3600 })),
    items: Type.Array(CreateSaleItem, { minItems: 1, maxItems: 1000 }),
  },
  { additionalProperties: false },
);
export type CreateSaleBodyType = Static<typeof CreateSaleBody>;

// The item's total after the restock is checked against MAX_ITEM_STOCK by Postgres (atomically).
export const RestockBody = Type.Object({ quantity: Type.Integer({ minimum: 1, maximum: MAX_ITEM_STOCK }) }, { additionalProperties: false });

export const SaleSummary = Type.Object({
  id: Type.String(),
  name: Type.String(),
  status: Type.String(),
  startsAt: Timestamp,
  endsAt: Timestamp,
});

export const ItemSwitchBody = Type.Object({
  saleId: Type.String(),
  sku: Type.String(),
  available: Type.Integer(),
  state: Type.String(),
});
