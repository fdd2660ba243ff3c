-- One row whose ts the primary's clock writes every 250 ms while any
-- api-perf process reads from replicas (MYSQL_READ_DSN). A replica's lag is
-- its own UTC_TIMESTAMP(6) minus the ts it has applied: the replica holds
-- every write that committed on the primary before that ts. Both statements
-- can run again after an interruption.
CREATE TABLE IF NOT EXISTS replication_heartbeat (
    id TINYINT UNSIGNED NOT NULL,
    ts DATETIME(6)      NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;
INSERT IGNORE INTO replication_heartbeat (id, ts) VALUES (1, UTC_TIMESTAMP(6));
