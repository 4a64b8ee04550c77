-- Orders Redis accepted (201) that Postgres's oversell guard refused — possible only after Redis
-- lost writes and sold the same unit twice — are kept as rows of their own status instead of a
-- failed job: every 201 is one row, live or a visible rejection to compensate (DESIGN.md,
-- invariant 3). A rejection is final and never counted in sale_items.sold; rejected_at says when
-- the guard refused it.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders
  ADD COLUMN rejected_at timestamptz,
  ADD CONSTRAINT orders_status_check CHECK (status IN ('pending_payment', 'paid', 'cancelled', 'expired', 'rejected_oversell')),
  ADD CONSTRAINT orders_rejected_has_time CHECK (status <> 'rejected_oversell' OR rejected_at IS NOT NULL);

-- The report's list of buyers to compensate reads only these rows.
CREATE INDEX orders_rejected_oversell ON orders (sale_id, created_at) WHERE status = 'rejected_oversell';
