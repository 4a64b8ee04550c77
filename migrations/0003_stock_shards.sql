-- Key layout 2 (step 8): an item may be split into K stock shards, each in its own Redis slot.
-- K is fixed when the sale is created (the shards' hash tags and every shopper's home shard are
-- derived from it), so it is recorded with the item; sales created before keep K = 1.
ALTER TABLE sale_items
  ADD COLUMN stock_shards smallint NOT NULL DEFAULT 1,
  ADD CONSTRAINT sale_items_stock_shards_range CHECK (stock_shards BETWEEN 1 AND 64);
