-- Loses nothing: SQLite has no replicas to measure.
DROP TABLE replication_heartbeat;
