-- Keys live in idempotency_records now, per client and byte for byte. The
-- column's case-insensitive unique index made two clients' keys, or one
-- client's keys in different case, collide on one order.
ALTER TABLE orders DROP INDEX orders_idempotency_key, DROP COLUMN idempotency_key;
