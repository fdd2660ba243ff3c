-- Idempotency records are scoped to a client and compared byte for byte,
-- and each holds a complete response: it is written in the same transaction
-- as the order it answers for, so there is no separate "claim" that could
-- outlive its request. Every statement can run again after an interruption.
CREATE TABLE IF NOT EXISTS idempotency_records (
    scope        BINARY(32)     NOT NULL,
    idem_key     VARBINARY(255) NOT NULL,
    request_hash BINARY(32)     NOT NULL,
    status_code  SMALLINT       NOT NULL,
    body         MEDIUMBLOB     NOT NULL,
    created_at   DATETIME(6)    NOT NULL,
    expires_at   DATETIME(6)    NOT NULL,
    PRIMARY KEY (scope, idem_key),
    KEY idempotency_records_expires_at (expires_at)
) ENGINE=InnoDB;

-- A run that was cut off after the DROP below starts again here: the old
-- table then comes back empty, for the copy to find nothing and the DROP
-- to remove it again.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    idem_key     VARCHAR(255) NOT NULL PRIMARY KEY,
    request_hash BINARY(32)   NOT NULL,
    status_code  INT          NULL,
    body         MEDIUMBLOB   NULL,
    created_at   DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Completed responses carry over into the shared scope (keys had no client
-- before); unfinished claims are dropped, as their requests are long gone.
INSERT IGNORE INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at)
SELECT UNHEX(REPEAT('00', 32)), CAST(idem_key AS BINARY), request_hash, status_code, body,
       created_at, created_at + INTERVAL 86400 SECOND
FROM idempotency_keys
WHERE status_code IS NOT NULL AND body IS NOT NULL AND created_at > CURRENT_TIMESTAMP(6) - INTERVAL 86400 SECOND;

DROP TABLE IF EXISTS idempotency_keys;
