#!/usr/bin/env bash
# Validates api-perf's deployment files: Compose files, shell scripts, the
# Dockerfile, GitHub workflows, Kubernetes manifests, and that the binary
# builds with exactly the Dockerfile's flags and answers its own health check.
#
# Missing tools are installed first (skipped when present), so it can run
# again and again: shellcheck and docker-compose from apt, actionlint with
# `go install`, dockerfilelint from npm, kubectl from apt or else kustomize
# with `go install`, promtool from apt (Debian's prometheus). NO_INSTALL=1
# only uses what is there.
#
# Exits non-zero when any check fails, after a summary of all of them.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

TOOLS_DIR=${TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/api-perf-tools}
GOBIN_DIR=$(go env GOBIN 2>/dev/null)
[[ -n "$GOBIN_DIR" ]] || GOBIN_DIR="$(go env GOPATH 2>/dev/null)/bin"
export PATH="$PATH:$GOBIN_DIR:$TOOLS_DIR/node_modules/.bin"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
	if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

declare -a SUMMARY=()
FAILED=0

# check runs one named check, keeps its output quiet on success and shows it
# on failure.
check() {
	local name=$1
	shift
	local log="$WORK/log"
	local start=$SECONDS
	printf '%-58s ' "$name"
	if "$@" >"$log" 2>&1; then
		echo "ok ($((SECONDS - start))s)"
		SUMMARY+=("PASS  $name")
	else
		echo "FAIL ($((SECONDS - start))s)"
		sed 's/^/    /' "$log"
		SUMMARY+=("FAIL  $name")
		FAILED=$((FAILED + 1))
	fi
}

# ---------------------------------------------------------------------------
# Tools

APT_UPDATED=
apt_install() {
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null || {
			echo "need root or sudo to apt-get install $*"
			return 1
		}
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null || {
		echo "no apt-get to install $*"
		return 1
	}
	if [[ -z "$APT_UPDATED" ]]; then
		"${sudo[@]}" apt-get update -qq || return 1
		APT_UPDATED=1
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# ensure runs an install step only when none of the named commands exists.
ensure() {
	local what=$1 install=$2
	shift 2
	local c
	for c in "$@"; do
		if command -v "$c" >/dev/null 2>&1; then
			return 0
		fi
	done
	if [[ -n "${NO_INSTALL:-}" ]]; then
		echo "$what is missing and NO_INSTALL is set"
		return 1
	fi
	echo "installing $what"
	$install
}

install_shellcheck() { apt_install shellcheck; }
install_compose() { apt_install docker-compose; }
install_actionlint() { go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12; }
install_dockerfilelint() {
	npm install -g --no-fund --no-audit dockerfilelint@1.8.0 2>/dev/null ||
		npm install --prefix "$TOOLS_DIR" --no-fund --no-audit dockerfilelint@1.8.0
}
install_kustomize() {
	# Debian has no current kubectl; kustomize itself comes from the Go proxy
	# (v5.8.3 and later need Go 1.27).
	apt_install kubectl 2>/dev/null ||
		go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2
}

# promtool checks and unit-tests the alerting rules (k8s/validate runs it).
install_promtool() { apt_install --no-install-recommends prometheus; }
# cfn-lint (with the SAM translator it depends on) checks template.yaml.
CFN_LINT_VERSION=1.51.0
install_cfn_lint() {
	local pip
	pip=$(command -v pip3 || command -v pip) || {
		echo "no pip to install cfn-lint"
		return 1
	}
	# A Python that refuses system-wide installs (PEP 668) takes pipx.
	"$pip" install --quiet "cfn-lint==$CFN_LINT_VERSION" ||
		{ command -v pipx >/dev/null && pipx install "cfn-lint==$CFN_LINT_VERSION"; }
}
install_jq() { apt_install jq; }

have_compose_v2() { docker compose version >/dev/null 2>&1; }

echo "== tools"
check "tool: go" command -v go
check "tool: shellcheck" ensure shellcheck install_shellcheck shellcheck
if have_compose_v2 && ! command -v docker-compose >/dev/null; then
	COMPOSE=(docker compose)
	check "tool: docker compose (v2 plugin)" true
else
	COMPOSE=(docker-compose)
	check "tool: docker-compose" ensure docker-compose install_compose docker-compose
fi
check "tool: actionlint" ensure actionlint install_actionlint actionlint
check "tool: dockerfilelint" ensure dockerfilelint install_dockerfilelint dockerfilelint
check "tool: kubectl or kustomize" ensure "kubectl or kustomize" install_kustomize kubectl kustomize
check "tool: promtool" ensure promtool install_promtool promtool
check "tool: cfn-lint" ensure cfn-lint install_cfn_lint cfn-lint
check "tool: jq" ensure jq install_jq jq

# ---------------------------------------------------------------------------
# Compose

# compose renders the given files with an empty env file instead of a local
# .env, so the result does not depend on a developer's settings.
: >"$WORK/empty.env"
compose() {
	"${COMPOSE[@]}" --env-file "$WORK/empty.env" "$@"
}
compose_prod_secrets() {
	API_KEYS=check MYSQL_PASSWORD=check MYSQL_ROOT_PASSWORD=check MYSQL_REPLICATION_PASSWORD=check \
		compose -f docker-compose.yml -f docker-compose.prod.yml config -q
}
compose_prod_refuses_without_secrets() {
	local out
	if out=$(env -u API_KEYS -u MYSQL_PASSWORD -u MYSQL_ROOT_PASSWORD -u MYSQL_REPLICATION_PASSWORD \
		"${COMPOSE[@]}" --env-file "$WORK/empty.env" -f docker-compose.yml -f docker-compose.prod.yml config -q 2>&1); then
		echo "the prod Compose files rendered without API_KEYS and MySQL passwords"
		return 1
	fi
	# Fail for the right reason, not for any error.
	if [[ "$out" != *"set API_KEYS"* ]]; then
		echo "expected the missing API_KEYS to be named; got:"
		echo "$out"
		return 1
	fi
}

echo "== compose"
check "compose config: base" compose -f docker-compose.yml config -q
check "compose config: base + dev" compose -f docker-compose.yml -f docker-compose.dev.yml config -q
check "compose config: base + prod" compose_prod_secrets
check "compose config: base + prod needs its secrets" compose_prod_refuses_without_secrets

# ---------------------------------------------------------------------------
# Shell

shell_files() {
	git ls-files --cached --others --exclude-standard -- '*.sh'
	if [[ -f .ci/run ]]; then echo .ci/run; fi
}
run_shellcheck() {
	local files=()
	mapfile -t files < <(shell_files | sort -u)
	echo "files: ${files[*]}"
	((${#files[@]} > 0)) || return 0
	shellcheck -x "${files[@]}"
}
docker_scripts_smoke() {
	local c
	for c in dev-up dev-down prod-up prod-down build "logs api" "exec go version" test clean help; do
		# Word splitting of $c into command and arguments is intended.
		# shellcheck disable=SC2086
		DRY_RUN=1 COMPOSE=docker-compose ./docker-scripts.sh $c >/dev/null || {
			echo "docker-scripts.sh $c failed"
			return 1
		}
	done
	if DRY_RUN=1 ./docker-scripts.sh no-such-command >/dev/null 2>&1; then
		echo "docker-scripts.sh accepted an unknown command"
		return 1
	fi
}

echo "== shell"
check "shellcheck: every *.sh and .ci/run" run_shellcheck
check "docker-scripts.sh: every command (dry run)" docker_scripts_smoke

# ---------------------------------------------------------------------------
# Dockerfile

run_dockerfilelint() {
	# dockerfilelint predates BuildKit: it reads `FROM --platform=...` and
	# stage references (`FROM base`) as untagged images. Its tag rule is off
	# here and dockerfile_tags below checks tags itself.
	printf 'rules:\n  missing_tag: off\n' >"$WORK/.dockerfilelintrc"
	dockerfilelint -c "$WORK" Dockerfile
}
dockerfile_tags() {
	local stages=() line image bad=0
	while read -r line; do
		# FROM [--platform=...] image [AS name]
		read -ra words <<<"$line"
		local i=1
		[[ "${words[1]}" == --* ]] && i=2
		image=${words[$i]}
		if [[ " ${stages[*]} " != *" $image "* ]]; then
			if [[ "$image" != *:* && "$image" != *@* ]] || [[ "$image" == *:latest ]]; then
				echo "FROM $image: pin a tag (not latest) or a digest"
				bad=1
			fi
		fi
		if [[ "${words[$((i + 1))]:-}" =~ ^[Aa][Ss]$ ]]; then
			stages+=("${words[$((i + 2))]}")
		fi
	done < <(grep -E '^FROM ' Dockerfile)
	return "$bad"
}

echo "== Dockerfile"
check "dockerfilelint Dockerfile" run_dockerfilelint
check "Dockerfile: base images carry tags" dockerfile_tags

# ---------------------------------------------------------------------------
# Workflows

echo "== workflows"
check "actionlint .github/workflows" actionlint

# ---------------------------------------------------------------------------
# Lambda (SAM)

# sam_deploy_mapping runs scripts/sam-deploy.sh in DRY_RUN mode with a stub
# aws command answering a fixed Parameter Store listing: settings become
# their template parameters, SecureStrings are hidden, and a misspelled name
# stops the deployment.
sam_deploy_mapping() {
	local stub="$WORK/stub" out
	mkdir -p "$stub"
	# The stub prints the listing when it runs, not now.
	# shellcheck disable=SC2016
	printf '#!/bin/sh\ncat "$STUB_PARAMETERS"\n' >"$stub/aws"
	chmod +x "$stub/aws"
	cat >"$WORK/parameters.json" <<'JSON'
{"Parameters": [
  {"Name": "/api-perf/MYSQL_DSN", "Type": "SecureString", "Value": "api:s3cret@tcp(db:3306)/apiperf?parseTime=true"},
  {"Name": "/api-perf/LOG_LEVEL", "Type": "String", "Value": "warn"}
]}
JSON
	local env=(PATH="$stub:$PATH" STUB_PARAMETERS="$WORK/parameters.json" DRY_RUN=1
		VERSION=v0.0.0 SUBNET_IDS=subnet-1 SECURITY_GROUP_IDS=sg-1)
	out=$(env "${env[@]}" bash scripts/sam-deploy.sh 2>&1)
	local rc=$?
	echo "$out"
	[[ $rc -eq 0 && $out == *'MysqlDsn=\*\*\*'* && $out == *'LogLevel=\"warn\"'* && $out != *s3cret* ]] || {
		echo "expected MysqlDsn hidden and LogLevel=\"warn\""
		return 1
	}
	sed -i 's|/api-perf/LOG_LEVEL|/api-perf/LOG_LEVLE|' "$WORK/parameters.json"
	out=$(env "${env[@]}" bash scripts/sam-deploy.sh 2>&1)
	rc=$?
	if [[ $rc -eq 0 || $out != *"LOG_LEVLE is not a setting"* ]]; then
		echo "a misspelled parameter was not refused:"
		echo "$out"
		return 1
	fi
}

echo "== lambda (SAM)"
check "cfn-lint template.yaml" cfn-lint template.yaml
check "sam-deploy.sh: Parameter Store -> template parameters" sam_deploy_mapping

# ---------------------------------------------------------------------------
# Kubernetes

render() {
	if command -v kubectl >/dev/null; then
		kubectl kustomize "$1" >/dev/null
	else
		kustomize build "$1" >/dev/null
	fi
}
validate_module() (
	cd k8s/validate && go vet ./... && go test -count=1 ./...
)

echo "== kubernetes"
for dir in k8s/base k8s/overlays/dev k8s/overlays/prod; do
	check "kustomize render: $dir" render "$dir"
done
check "k8s/validate: strict decode, invariants, promtool rule tests (go test)" validate_module

# ---------------------------------------------------------------------------
# The binary, built as the Dockerfile builds it

dockerfile_arg() {
	sed -n "s/^ARG $1=\"\\(.*\\)\"\$/\\1/p" Dockerfile
}
build_like_dockerfile() {
	local buildflags ldflags
	buildflags=$(dockerfile_arg GO_BUILDFLAGS)
	ldflags=$(dockerfile_arg GO_LDFLAGS)
	if [[ -z "$buildflags" || -z "$ldflags" ]]; then
		echo "Dockerfile lost its ARG GO_BUILDFLAGS=\"...\" or ARG GO_LDFLAGS=\"...\" line"
		return 1
	fi
	# The Dockerfile's go build must still use exactly these two arguments.
	local run
	run=$(tr -d '\\\n' <Dockerfile | tr -s ' ')
	# The ${...} are literal text of the Dockerfile, not expansions.
	# shellcheck disable=SC2016
	if [[ "$run" != *'CGO_ENABLED=0 '*'go build ${GO_BUILDFLAGS} -ldflags="${GO_LDFLAGS} '* ]]; then
		echo "the Dockerfile's go build no longer reads CGO_ENABLED=0, \${GO_BUILDFLAGS} and \${GO_LDFLAGS}"
		return 1
	fi
	local flags=()
	read -ra flags <<<"$buildflags"
	echo "CGO_ENABLED=0 go build ${flags[*]} -ldflags=\"$ldflags -X main.version=check\" ./cmd/api-perf"
	CGO_ENABLED=0 go build "${flags[@]}" -ldflags="$ldflags -X main.version=check" \
		-o "$WORK/api-perf" ./cmd/api-perf || return 1
	# The build settings recorded in the binary prove the flags took effect
	# (-trimpath keeps -ldflags out of them; the symbol table shows -s).
	local info
	info=$(go version -m "$WORK/api-perf")
	local want
	for want in $'build\tCGO_ENABLED=0' $'build\t-trimpath=true' $'build\t-tags=lambda.norpc'; do
		if [[ "$info" != *"$want"* ]]; then
			echo "binary build info lacks: $want"
			echo "$info" | grep -E $'^\tbuild'
			return 1
		fi
	done
	if [[ " $ldflags " == *" -s "* ]] && go tool nm "$WORK/api-perf" >/dev/null 2>&1; then
		echo "the binary has a symbol table although GO_LDFLAGS has -s"
		return 1
	fi
	# Function names survive -s (tracebacks need them): none may be net/rpc's,
	# which aws-lambda-go links unless built with lambda.norpc.
	if grep -aq 'net/rpc\.' "$WORK/api-perf"; then
		echo "the binary links net/rpc; GO_BUILDFLAGS must carry -tags=lambda.norpc"
		return 1
	fi
	"$WORK/api-perf" version
	ls -l "$WORK/api-perf"
}
# start_server runs the built binary in embedded mode on addr and waits until
# `api-perf healthcheck` exits 0 against it; it returns 2 when the port was
# taken, so the caller can try another.
start_server() {
	local addr=$1
	mkdir -p "$WORK/data"
	env -u MYSQL_DSN -u REDIS_URL HTTP_ADDR="$addr" METRICS_ADDR= DATA_DIR="$WORK/data" \
		SHUTDOWN_TIMEOUT=5s "$WORK/api-perf" >"$WORK/server.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 1 40); do
		if HTTP_ADDR=$addr "$WORK/api-perf" healthcheck 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			wait "$SERVER_PID"
			SERVER_PID=
			grep -q 'address already in use' "$WORK/server.log" && return 2
			break
		fi
		sleep 0.5
	done
	echo "healthcheck never exited 0 against the server on $addr; server log:"
	cat "$WORK/server.log"
	return 1
}
healthcheck_contract() {
	[[ -x "$WORK/api-perf" ]] || {
		echo "no binary (the build check failed)"
		return 1
	}
	# Other servers may run on this machine: a port where something already
	# answers /healthz proves nothing either way, so try another. The port
	# finally used is one where the probe failed before our server started,
	# which is the "1 without a server" half of the contract.
	local addr rc=2
	for _ in 1 2 3 4 5; do
		addr="127.0.0.1:$((20000 + RANDOM % 10000))"
		if HTTP_ADDR=$addr "$WORK/api-perf" healthcheck 2>/dev/null; then
			echo "something already answers on $addr; trying another port"
			continue
		fi
		start_server "$addr"
		rc=$?
		[[ $rc -eq 2 ]] || break
		echo "port of $addr taken; trying another"
	done
	[[ $rc -eq 0 ]] || return 1
	# SIGTERM drains and exits 0 within SHUTDOWN_TIMEOUT.
	kill -TERM "$SERVER_PID"
	for _ in $(seq 1 20); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		echo "server still running 10 s after SIGTERM"
		return 1
	fi
	wait "$SERVER_PID"
	local code=$?
	SERVER_PID=
	if [[ $code -ne 0 ]]; then
		echo "server exited $code after SIGTERM; log:"
		cat "$WORK/server.log"
		return 1
	fi
}

echo "== binary"
check "go build ./cmd/api-perf with the Dockerfile's flags" build_like_dockerfile
check "api-perf healthcheck: 1 without a server, 0 with one" healthcheck_contract

# ---------------------------------------------------------------------------

echo
echo "== summary"
printf '%s\n' "${SUMMARY[@]}"
echo "$((${#SUMMARY[@]} - FAILED)) passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
