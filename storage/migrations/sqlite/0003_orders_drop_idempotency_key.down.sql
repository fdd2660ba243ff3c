-- Brings back orders.idempotency_key, empty: the keys live in
-- idempotency_records, per client, and are not copied back (two clients'
-- equal keys would collide on the one UNIQUE column). SQLite cannot add a
-- UNIQUE column, so the table is rebuilt as the up migration rebuilt it,
-- keeping ids and the AUTOINCREMENT high-water mark.
CREATE TABLE orders_old (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id      INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    unit_price      INTEGER NOT NULL,
    total           INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending','paid','shipped','delivered','cancelled')),
    idempotency_key TEXT    NULL UNIQUE,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO orders_old (id, product_id, quantity, unit_price, total, status, created_at, updated_at)
SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders;
DELETE FROM sqlite_sequence WHERE name = 'orders_old';
INSERT INTO sqlite_sequence (name, seq) SELECT 'orders_old', seq FROM sqlite_sequence WHERE name = 'orders';
DROP TABLE orders;
ALTER TABLE orders_old RENAME TO orders;
CREATE INDEX orders_product_id ON orders (product_id, id);
CREATE INDEX orders_status_id ON orders (status, id);
