-- products.stock and products.version become 64-bit, as they are in Go and
-- in SQLite. Neither is bounded by what a client sends: orders give their
-- units back on cancel and delete on top of any stock a write set, and
-- every order and every write adds one to the version, so INT UNSIGNED
-- (4 294 967 295) and INT (2 147 483 647) could be passed through the API
-- alone, after which the product's orders and writes failed with error 1264.
-- orders.quantity stays INT: it is written once, from a request bounded by
-- MaxQuantity, and never added to.
--
-- MODIFY keeps each column where it is, with its NOT NULL and default; the
-- table's CHECK constraint is not touched. Changing a column's type copies
-- the table, and writes to products wait while it runs: time in proportion
-- to the number of products (see "Long migrations" in docs/migrations.md).
-- The statement can run twice.
ALTER TABLE products
    MODIFY COLUMN stock   BIGINT UNSIGNED NOT NULL DEFAULT 0,
    MODIFY COLUMN version BIGINT          NOT NULL DEFAULT 1;
