-- Loses nothing but the last heartbeat: processes of the previous release
-- do not read from replicas.
DROP TABLE IF EXISTS replication_heartbeat;
