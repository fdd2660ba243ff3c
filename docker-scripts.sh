#!/usr/bin/env bash
# Everyday Docker and Compose commands for api-perf. Run with no argument or
# `help` for the list. DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

readonly DEV_PROJECT=api-perf-dev
readonly PROD_PROJECT=api-perf-prod
API_IMAGE=${API_IMAGE:-api-perf:local}
API_DEV_IMAGE=${API_DEV_IMAGE:-api-perf:dev}

usage() {
	cat <<EOF
Usage: $(basename "$0") <command> [args]

Commands:
  dev-up          build the dev image and start api (go run), MySQL, its read replica and Redis;
                  MySQL on host port \${MYSQL_HOST_PORT:-3307}, the replica on
                  \${MYSQL_REPLICA_HOST_PORT:-3308}, Redis on \${REDIS_HOST_PORT:-6380}
  dev-down        stop the dev stack (volumes are kept)
  prod-up         build the prod image and start the hardened stack; needs
                  API_KEYS, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD and MYSQL_REPLICATION_PASSWORD
                  in the environment or .env
  prod-down       stop the prod stack (volumes are kept)
  build           build the prod image as \$API_IMAGE (now $API_IMAGE)
  logs [service]  follow the logs of the stack (all services, or one)
  exec <cmd...>   run a command in the running api container
  test            run 'make test' in the dev image against the stack's MySQL and Redis
  clean           stop both stacks and remove their containers, volumes and local images
  help            show this text

logs and exec act on the dev stack; set STACK=prod for the prod one.
EOF
}

# run prints the command, then runs it unless DRY_RUN is set.
run() {
	printf '+ %s\n' "$*" >&2
	if [[ -z "${DRY_RUN:-}" ]]; then
		"$@"
	fi
}

# compose_cmd picks Compose v2 (docker compose) when present, else v1
# (docker-compose); COMPOSE overrides both, e.g. COMPOSE=docker-compose.
compose_cmd() {
	if [[ -n "${COMPOSE:-}" ]]; then
		# Word splitting is intended: COMPOSE may be "docker compose".
		# shellcheck disable=SC2206
		COMPOSE_ARGV=(${COMPOSE})
	elif docker compose version >/dev/null 2>&1; then
		COMPOSE_ARGV=(docker compose)
	elif command -v docker-compose >/dev/null 2>&1; then
		COMPOSE_ARGV=(docker-compose)
	elif [[ -n "${DRY_RUN:-}" ]]; then
		COMPOSE_ARGV=(docker compose)
	else
		echo "error: neither 'docker compose' nor 'docker-compose' is installed" >&2
		exit 1
	fi
}

dev() {
	run "${COMPOSE_ARGV[@]}" -p "$DEV_PROJECT" -f docker-compose.yml -f docker-compose.dev.yml "$@"
}

prod() {
	run "${COMPOSE_ARGV[@]}" -p "$PROD_PROJECT" -f docker-compose.yml -f docker-compose.prod.yml "$@"
}

# stack runs a Compose command on the stack chosen by STACK (dev by default).
stack() {
	case "${STACK:-dev}" in
	dev) dev "$@" ;;
	prod) prod "$@" ;;
	*)
		echo "error: STACK must be dev or prod, not '${STACK}'" >&2
		exit 2
		;;
	esac
}

version() {
	git describe --tags --always --dirty 2>/dev/null || echo dev
}

main() {
	if [[ $# -eq 0 ]]; then
		usage
		exit 2
	fi
	local cmd=$1
	shift
	case "$cmd" in
	help | -h | --help | usage)
		usage
		return
		;;
	dev-up | dev-down | prod-up | prod-down | logs | exec | test | clean)
		compose_cmd
		;;
	build) ;;
	*)
		echo "error: unknown command '$cmd'" >&2
		echo >&2
		usage >&2
		exit 2
		;;
	esac

	case "$cmd" in
	dev-up)
		dev up -d --build "$@"
		;;
	dev-down)
		dev down "$@"
		;;
	prod-up)
		VERSION=$(version)
		export VERSION
		prod up -d --build "$@"
		;;
	prod-down)
		prod down "$@"
		;;
	build)
		run docker build --target prod -t "$API_IMAGE" \
			--build-arg VERSION="$(version)" \
			--build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
			--build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
			"$@" .
		;;
	logs)
		stack logs -f --tail=200 "$@"
		;;
	exec)
		if [[ $# -eq 0 ]]; then
			echo "error: exec needs a command, e.g. '$(basename "$0") exec go version'" >&2
			exit 2
		fi
		stack exec api "$@"
		;;
	test)
		# Tests create and drop their own databases (internal/testenv), so
		# they connect as root to the server, not to one database.
		dev run --rm \
			-e "TEST_MYSQL_DSN=root:${MYSQL_ROOT_PASSWORD:-root}@tcp(mysql:3306)/" \
			-e "TEST_REDIS_ADDR=redis:6379" \
			api make test "$@"
		;;
	clean)
		dev down -v --remove-orphans --rmi local
		prod down -v --remove-orphans --rmi local
		# Absent images are fine: clean is meant to be run any time.
		run docker image rm -f "$API_IMAGE" "$API_DEV_IMAGE" || true
		;;
	esac
}

main "$@"
