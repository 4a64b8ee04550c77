-- Limits the API enforces (src/sales/sale.ts), held by Postgres too, so that every count and sum
-- fits its column and stays an exact JavaScript number; and the dead-letter table where the
-- persist worker sets aside an order state Postgres refuses as data, instead of retrying it forever.

-- A restock is refused by these (the API maps them to 409 STOCK_LIMIT_EXCEEDED). Sums are taken
-- in bigint/numeric so the CHECK itself cannot overflow: restocked ≤ 1e9 and one restock ≤ 1e9,
-- so `restocked + quantity` stays inside int4 until the CHECK refuses it.
ALTER TABLE sale_items
  ADD CONSTRAINT sale_items_stock_within_limit CHECK (initial_stock::bigint + restocked <= 1000000000),
  ADD CONSTRAINT sale_items_value_within_limit CHECK ((initial_stock::numeric + restocked) * unit_price <= 9007199254740991),
  ADD CONSTRAINT sale_items_unit_price_within_limit CHECK (unit_price <= 10000000000),
  ADD CONSTRAINT sale_items_low_stock_units_within_limit CHECK (low_stock_units <= 1000000000);

-- One row per (order, status) that could not be written: the state as JSON text with control
-- characters escaped (`jsonb` and `text` both refuse a raw NUL, the usual poison), Postgres's
-- error and SQLSTATE. Ids are stored escaped too: they come from the entry that failed.
CREATE TABLE order_dead_letters (
  order_id   text        NOT NULL,
  status     text        NOT NULL,
  sale_id    text        NOT NULL,
  payload    text        NOT NULL,
  sqlstate   text,
  error      text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, status)
);

CREATE INDEX order_dead_letters_by_sale ON order_dead_letters (sale_id, created_at);
