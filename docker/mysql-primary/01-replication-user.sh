# shellcheck shell=bash
# Sourced by the mysql image's entrypoint on the primary's first start (an
# empty data directory), after it has created the apiperf database and user:
# the account the replica (the mysql-replica service) replicates with. The
# statements are binary-logged, so the replica receives them too.
docker_process_sql <<SQL
CREATE USER IF NOT EXISTS 'replicator'@'%' IDENTIFIED BY '${MYSQL_REPLICATION_PASSWORD}';
GRANT REPLICATION SLAVE ON *.* TO 'replicator'@'%';
SQL
