#!/usr/bin/env bash
# Makes sure the services the tests need answer on 127.0.0.1: MariaDB on
# 3306 (root, empty password) and Redis on 6379. Whatever is already
# running is used as is; what is missing is installed from Debian's
# packages and started, or, without apt, started with Docker Compose.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
	local port=$1 name=$2
	for _ in $(seq 1 60); do
		port_open "$port" && return 0
		sleep 0.5
	done
	log "$name did not come up on 127.0.0.1:$port"
	return 1
}

apt_install() {
	if [ -z "${APT_UPDATED:-}" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

have_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }

compose_up() {
	if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
		log "starting $1 with docker compose"
		docker compose up -d "$1"
		return 0
	fi
	return 1
}

mariadb_root_tcp() {
	mariadb -h127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1
}

ensure_mariadb() {
	if port_open 3306; then
		return 0
	fi
	if have_apt; then
		command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || { log "installing mariadb-server"; apt_install mariadb-server; }
		mkdir -p /run/mysqld
		chown mysql:mysql /run/mysqld 2>/dev/null || true
		log "starting MariaDB"
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
		wait_port 3306 MariaDB
		# Debian's root logs in through the unix socket only; the tests
		# connect over TCP with an empty password.
		if ! mariadb_root_tcp; then
			mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
		fi
		return 0
	fi
	compose_up mysql && wait_port 3306 MySQL && return 0
	log "MariaDB/MySQL is not reachable on 127.0.0.1:3306 and cannot be started here"
	return 1
}

ensure_redis() {
	if port_open 6379; then
		return 0
	fi
	if have_apt; then
		command -v redis-server >/dev/null 2>&1 || { log "installing redis-server"; apt_install redis-server; }
		log "starting Redis"
		redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
		wait_port 6379 Redis
		return 0
	fi
	compose_up redis && wait_port 6379 Redis && return 0
	log "Redis is not reachable on 127.0.0.1:6379 and cannot be started here"
	return 1
}

# The read-replica tests start a private MariaDB primary and replica of their
# own (internal/mariadbd), whatever answers on 3306: they need mariadbd and
# mariadb-install-db (which runs my_print_defaults from the client package).
ensure_mariadb_binaries() {
	if { command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } &&
		command -v mariadb-install-db >/dev/null 2>&1 && command -v my_print_defaults >/dev/null 2>&1; then
		return 0
	fi
	if have_apt; then
		log "installing mariadb-server-core and mariadb-client-core (mariadbd, mariadb-install-db)"
		apt_install mariadb-server-core mariadb-client-core
		return 0
	fi
	log "mariadbd and mariadb-install-db are missing; the read-replica tests will fail"
}

ensure_mariadb
ensure_mariadb_binaries
ensure_redis
# redis-cli is needed by the tests that start their own Redis Cluster.
command -v redis-cli >/dev/null 2>&1 || { have_apt && apt_install redis-tools; }
log "MariaDB and Redis are up"
