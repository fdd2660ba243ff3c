-- Brings back version 1's idempotency_keys, where a key belonged to nobody
-- in particular. Unexpired responses of the shared scope (writes without API
-- keys) go back into it. Records scoped to one client are lost: the old
-- table cannot tell clients apart, and copying them would replay one
-- client's response to another. Those clients' retries after the downgrade
-- are new requests.
CREATE TABLE idempotency_keys (
    idem_key     TEXT    NOT NULL PRIMARY KEY,
    request_hash BLOB    NOT NULL,
    status_code  INTEGER NULL,
    body         BLOB    NULL,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

INSERT OR IGNORE INTO idempotency_keys (idem_key, request_hash, status_code, body, created_at)
SELECT idem_key, request_hash, status_code, body, created_at
FROM idempotency_records
WHERE scope = zeroblob(32) AND expires_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

DROP TABLE idempotency_records;
