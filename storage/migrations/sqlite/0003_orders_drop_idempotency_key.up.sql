-- orders.idempotency_key goes: a UNIQUE column cannot be dropped in SQLite,
-- so the table is rebuilt, keeping ids and the AUTOINCREMENT high-water mark
-- (ids of deleted orders are never handed out again).
CREATE TABLE orders_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id  INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    unit_price  INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending','paid','shipped','delivered','cancelled')),
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO orders_new (id, product_id, quantity, unit_price, total, status, created_at, updated_at)
SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders;
DELETE FROM sqlite_sequence WHERE name = 'orders_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'orders_new', seq FROM sqlite_sequence WHERE name = 'orders';
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;
CREATE INDEX orders_product_id ON orders (product_id, id);
CREATE INDEX orders_status_id ON orders (status, id);
