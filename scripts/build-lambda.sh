#!/usr/bin/env bash
# Build the Lambda deployment packages of api-perf for the provided.al2023
# runtime: a static executable named bootstrap, zipped alone, per architecture.
#
#   scripts/build-lambda.sh                 # arm64 and amd64
#   ARCHES=arm64 scripts/build-lambda.sh    # one architecture
#   VERSION=v1.2.3 scripts/build-lambda.sh  # stamp the version (default: git describe)
#
# REVISION (default: the checked-out commit) and BUILD_TIME (default: now)
# are stamped too; `api-perf version` and apiperf_build_info show them.
#
# Output: dist/lambda-<arch>/bootstrap and dist/api-perf-lambda-<arch>.zip.
# The lambda.norpc tag leaves out the legacy go1.x RPC mode, which the
# provided runtimes never use; its net/rpc import alone keeps about 15 MB of
# dead code alive. The script fails if net/rpc is linked in all the same.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

arches=${ARCHES:-"arm64 amd64"}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || true)}
build_time=${BUILD_TIME:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}

# zip_bootstrap DIR ZIP stores DIR/bootstrap in ZIP as "bootstrap" with its
# executable bit, which Lambda needs to run it.
zip_bootstrap() {
	local dir=$1 zip=$2
	rm -f "$zip"
	if command -v zip >/dev/null 2>&1; then
		(cd "$dir" && zip -q -X -9 "$OLDPWD/$zip" bootstrap)
	elif command -v python3 >/dev/null 2>&1; then
		python3 - "$dir/bootstrap" "$zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
	else
		echo "build-lambda: need zip or python3 to package $dir/bootstrap" >&2
		return 1
	fi
}

mkdir -p dist
for arch in $arches; do
	case $arch in
	arm64 | amd64) ;;
	*)
		echo "build-lambda: unsupported architecture $arch (want arm64 or amd64)" >&2
		exit 1
		;;
	esac
	out=dist/lambda-$arch
	zip=dist/api-perf-lambda-$arch.zip
	rm -rf "$out"
	mkdir -p "$out"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch \
		go build -trimpath -tags lambda.norpc \
		-ldflags="-s -w -X main.version=$version -X main.revision=$revision -X main.buildTime=$build_time" \
		-o "$out/bootstrap" ./cmd/api-perf
	# Function names stay in the stripped binary (the runtime needs them for
	# tracebacks), so a net/rpc function there means the tag did not work.
	if grep -aq 'net/rpc\.' "$out/bootstrap"; then
		echo "build-lambda: $out/bootstrap links net/rpc; build with -tags lambda.norpc" >&2
		exit 1
	fi
	zip_bootstrap "$out" "$zip"
	printf '%-36s %8s KiB (bootstrap %s KiB)\n' "$zip" \
		"$(($(wc -c <"$zip") / 1024))" "$(($(wc -c <"$out/bootstrap") / 1024))"
done
