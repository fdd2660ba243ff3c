#!/usr/bin/env bash
# Runs the k6 smoke test and the rate-limit test against a freshly built
# api-perf on the embedded default (SQLite, in-process cache and limiter),
# on a loopback port the kernel picks, and stops the server afterwards.
# k6 is installed with `go install` only when it is not on PATH (or in
# $(go env GOPATH)/bin).
#
# Usage: scripts/k6-smoke.sh            smoke.js, then ratelimit.js
#        scripts/k6-smoke.sh smoke      only smoke.js
# Exit status: non-zero when a build fails, the server does not start, or
# a k6 threshold fails (k6 exits 99 then).
set -euo pipefail

readonly K6_MODULE="go.k6.io/k6@v1.8.1"
readonly which="${1:-all}"

cd "$(dirname "$0")/.."

tmp="$(mktemp -d)"
server_pid=""
stop_server() {
	if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	server_pid=""
}
cleanup() {
	stop_server
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

k6="$(command -v k6 || true)"
if [[ -z "$k6" && -x "$(go env GOPATH)/bin/k6" ]]; then
	k6="$(go env GOPATH)/bin/k6"
fi
if [[ -z "$k6" ]]; then
	echo "k6-smoke: k6 not found; installing $K6_MODULE (takes a few minutes)" >&2
	go install "$K6_MODULE"
	k6="$(go env GOPATH)/bin/k6"
fi
"$k6" version

go build -tags lambda.norpc -o "$tmp/api-perf" ./cmd/api-perf

# start_server ENV... starts api-perf on 127.0.0.1:0 with a fresh data
# directory and sets base_url from the address it logs once listening.
start_server() {
	rm -rf "$tmp/data" && mkdir -p "$tmp/data"
	: >"$tmp/server.log"
	env -i PATH="$PATH" HOME="${HOME:-/root}" HTTP_ADDR=127.0.0.1:0 DATA_DIR="$tmp/data" \
		ACCESS_LOG=off LOG_LEVEL=info LOG_FORMAT=json "$@" \
		"$tmp/api-perf" >"$tmp/server.log" 2>&1 &
	server_pid=$!
	local addr=""
	for _ in $(seq 1 100); do
		addr="$(grep -o '"http_addr":"127\.0\.0\.1:[0-9]*"' "$tmp/server.log" | head -n1 | cut -d'"' -f4 || true)"
		[[ -n "$addr" ]] && break
		if ! kill -0 "$server_pid" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	if [[ -z "$addr" ]]; then
		echo "k6-smoke: the server did not start:" >&2
		cat "$tmp/server.log" >&2
		exit 1
	fi
	base_url="http://$addr"
	for _ in $(seq 1 50); do
		if curl -fsS "$base_url/healthz" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "k6-smoke: $base_url/healthz never answered 200" >&2
	cat "$tmp/server.log" >&2
	exit 1
}

echo "== k6 smoke (limiter off)"
start_server RATE_LIMIT_READ=off RATE_LIMIT_WRITE=off
"$k6" run --quiet -e BASE_URL="$base_url" k6/smoke.js
stop_server

if [[ "$which" == "all" ]]; then
	echo "== k6 rate limit (reads limited to 5/s, burst 10)"
	start_server RATE_LIMIT_READ='5/1s,burst=10' RATE_LIMIT_WRITE=off
	"$k6" run --quiet -e BASE_URL="$base_url" -e LIMIT_RATE=5 -e LIMIT_BURST=10 k6/ratelimit.js
	stop_server

	# The crowd needs Redis; make test and .ci/run start it.
	if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
		echo "== k6 crowd (200 clients behind a trusted proxy, Redis limiter, 1000/s each)"
		start_server REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX="k6crowd-$$-$RANDOM:" \
			RATE_LIMIT_READ=1000/1s TRUSTED_PROXIES=127.0.0.1
		"$k6" run --quiet -e BASE_URL="$base_url" -e PROFILE=ci -e CLIENTS=200 k6/crowd.js
		metrics="$(curl -fsS "$base_url/metrics")"
		stop_server
		# Requests on debt wait for the once-a-second flush: the 200
		# clients' first requests and about one flush a second are all
		# the round trips, far fewer than one per request.
		awk '
			/^apiperf_ratelimit_redis_calls_total / { calls = $2 }
			/^apiperf_http_requests_total\{.*route="\/products\/\{id\}"/ { reqs += $2 }
			END {
				if (reqs == 0) { print "k6-smoke: no crowd requests counted"; exit 1 }
				printf "k6-smoke: crowd: %d requests, %d Redis round trips (%.3f a request)\n", reqs, calls, calls / reqs
				if (calls / reqs > 0.5) { print "k6-smoke: the crowd cost Redis more than half a round trip a request"; exit 1 }
			}' <<<"$metrics"
	else
		echo "== k6 crowd skipped: no Redis on 127.0.0.1:6379"
	fi
fi
echo "k6-smoke: passed"
