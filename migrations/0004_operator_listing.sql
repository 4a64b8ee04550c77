-- An operator's last delist or relist of an item, kept in the system of record: a sale whose Redis
-- state was lost is rebuilt from Postgres (src/recovery/), and must come back as the operator left
-- it. The low-stock rule's own delists are not recorded: the rebuild applies the rule to the
-- rebuilt stock, as loading a sale does.
ALTER TABLE sale_items
  ADD COLUMN operator_listing    text CHECK (operator_listing IN ('delisted', 'relisted')),
  ADD COLUMN operator_listing_at timestamptz,
  ADD CONSTRAINT sale_items_operator_listing_has_time CHECK ((operator_listing IS NULL) = (operator_listing_at IS NULL));
