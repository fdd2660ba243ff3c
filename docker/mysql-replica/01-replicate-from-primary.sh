# shellcheck shell=bash
# Sourced by the mysql image's entrypoint on the replica's first start (an
# empty data directory): makes this server a GTID replica of the mysql
# service. Replication starts when the entrypoint starts the real server,
# and it copies everything the primary has written since it was created:
# the apiperf database and user, then api-perf's migrations and data.
#
# The replica's own first-start writes (the root account; time zones are
# skipped with MYSQL_INITDB_SKIP_TZINFO) must not become GTIDs the primary
# never had, so its binary log and GTID history are reset first.
# super_read_only keeps everyone, root included, from writing to it.
docker_process_sql <<SQL
RESET BINARY LOGS AND GTIDS;
CHANGE REPLICATION SOURCE TO
  SOURCE_HOST = 'mysql',
  SOURCE_PORT = 3306,
  SOURCE_USER = 'replicator',
  SOURCE_PASSWORD = '${MYSQL_REPLICATION_PASSWORD}',
  SOURCE_AUTO_POSITION = 1,
  SOURCE_SSL = 1,
  SOURCE_CONNECT_RETRY = 5;
SET PERSIST super_read_only = ON;
SQL
