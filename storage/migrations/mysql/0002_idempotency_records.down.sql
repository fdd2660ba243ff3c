-- Brings back version 1's idempotency_keys, where a key belonged to nobody
-- in particular. Unexpired responses of the shared scope (writes without API
-- keys) go back into it. Records scoped to one client are lost: the old
-- table cannot tell clients apart, and copying them would replay one
-- client's response to another. Those clients' retries after the downgrade
-- are new requests.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    idem_key     VARCHAR(255) NOT NULL PRIMARY KEY,
    request_hash BINARY(32)   NOT NULL,
    status_code  INT          NULL,
    body         MEDIUMBLOB   NULL,
    created_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY idempotency_keys_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT IGNORE INTO idempotency_keys (idem_key, request_hash, status_code, body, created_at)
SELECT CONVERT(idem_key USING utf8mb4), request_hash, status_code, body, created_at
FROM idempotency_records
WHERE scope = UNHEX(REPEAT('00', 32)) AND expires_at > CURRENT_TIMESTAMP(6);

DROP TABLE IF EXISTS idempotency_records;
