-- Brings back orders.idempotency_key and its unique index, empty: the keys
-- live in idempotency_records, per client, and are not copied back (two
-- clients' equal keys would collide on the one column). Orders keep their
-- rows; only which key created an order is lost to version 2's code.
ALTER TABLE orders
    ADD COLUMN idempotency_key VARCHAR(255) NULL AFTER status,
    ADD UNIQUE KEY orders_idempotency_key (idempotency_key);
