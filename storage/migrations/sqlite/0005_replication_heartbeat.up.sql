-- The MySQL schema's heartbeat for read replicas. SQLite has no replicas;
-- the table keeps both dialects at the same version with the same tables.
CREATE TABLE replication_heartbeat (
    id INTEGER NOT NULL PRIMARY KEY,
    ts TEXT    NOT NULL
);
INSERT INTO replication_heartbeat (id, ts) VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
