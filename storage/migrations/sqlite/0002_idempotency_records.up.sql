-- Idempotency records are scoped to a client and compared byte for byte
-- (TEXT compares with the BINARY collation), and each holds a complete
-- response written in the same transaction as the order it answers for.
CREATE TABLE idempotency_records (
    scope        BLOB    NOT NULL,
    idem_key     TEXT    NOT NULL,
    request_hash BLOB    NOT NULL,
    status_code  INTEGER NOT NULL,
    body         BLOB    NOT NULL,
    created_at   TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    PRIMARY KEY (scope, idem_key)
) WITHOUT ROWID;
CREATE INDEX idempotency_records_expires_at ON idempotency_records (expires_at);

-- Completed responses carry over into the shared scope; unfinished claims
-- are dropped.
INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at)
SELECT zeroblob(32), idem_key, request_hash, status_code, body,
       created_at, strftime('%Y-%m-%dT%H:%M:%fZ', created_at, '+86400 seconds')
FROM idempotency_keys
WHERE status_code IS NOT NULL AND body IS NOT NULL
  AND created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-86400 seconds');

DROP TABLE idempotency_keys;
