-- The system of record: what operators created (sales, sale_items) and every accepted order.
-- Names are a contract with analysts and SREs (see DESIGN.md); change them only by a new migration.

CREATE TABLE sales (
  id                     text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
  name                   text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  starts_at              timestamptz NOT NULL,
  ends_at                timestamptz NOT NULL,
  currency               text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  payment_window_seconds integer     NOT NULL DEFAULT 900 CHECK (payment_window_seconds > 0),
  closed_at              timestamptz,
  created_at             timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT sales_window_is_positive CHECK (ends_at > starts_at)
);

CREATE TABLE sale_items (
  sale_id           text     NOT NULL REFERENCES sales (id),
  sku               text     NOT NULL CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
  name              text     NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  unit_price        bigint   NOT NULL CHECK (unit_price >= 0),
  initial_stock     integer  NOT NULL CHECK (initial_stock >= 0),
  restocked         integer  NOT NULL DEFAULT 0 CHECK (restocked >= 0),
  per_user_limit    integer  NOT NULL CHECK (per_user_limit >= 1),
  low_stock_percent numeric(5, 2) CHECK (low_stock_percent BETWEEN 0 AND 100),
  low_stock_units   integer  CHECK (low_stock_units >= 0),
  -- Live quantity (pending_payment + paid) recorded here, moved in the same transaction as the
  -- orders it counts: Postgres's own guard against overselling, whatever Redis says.
  sold              integer  NOT NULL DEFAULT 0 CHECK (sold >= 0),
  PRIMARY KEY (sale_id, sku),
  CONSTRAINT sale_items_sold_within_stock CHECK (sold <= initial_stock + restocked),
  CONSTRAINT sale_items_one_low_stock_rule CHECK (low_stock_percent IS NULL OR low_stock_units IS NULL)
);

CREATE TABLE orders (
  id              uuid        PRIMARY KEY,
  sale_id         text        NOT NULL,
  sku             text        NOT NULL,
  user_id         text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
  quantity        integer     NOT NULL CHECK (quantity > 0),
  unit_price      bigint      NOT NULL CHECK (unit_price >= 0),
  amount          bigint      NOT NULL,
  status          text        NOT NULL CHECK (status IN ('pending_payment', 'paid', 'cancelled', 'expired')),
  idempotency_key text        CHECK (length(idempotency_key) BETWEEN 1 AND 128),
  created_at      timestamptz NOT NULL,
  expires_at      timestamptz NOT NULL,
  paid_at         timestamptz,
  payment_ref     text,
  cancelled_at    timestamptz,
  expired_at      timestamptz,
  persisted_at    timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (sale_id, sku) REFERENCES sale_items (sale_id, sku),
  CONSTRAINT orders_amount_is_price_times_quantity CHECK (amount = unit_price * quantity),
  CONSTRAINT orders_paid_has_time CHECK (status <> 'paid' OR paid_at IS NOT NULL),
  CONSTRAINT orders_cancelled_has_time CHECK (status <> 'cancelled' OR cancelled_at IS NOT NULL),
  CONSTRAINT orders_expired_has_time CHECK (status <> 'expired' OR expired_at IS NOT NULL)
);

CREATE INDEX orders_by_user ON orders (user_id, sale_id, created_at DESC);
CREATE INDEX orders_by_item_status ON orders (sale_id, sku, status);
-- Not unique: a key is honoured for 24 h, after which the same key may make a new order.
CREATE INDEX orders_by_idempotency_key ON orders (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
