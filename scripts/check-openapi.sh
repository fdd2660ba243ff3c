#!/usr/bin/env bash
# Validates server/openapi.json with two independent tools:
#   - Redocly CLI's lint, recommended-strict ruleset (structure, references,
#     operation ids, security, responses), and
#   - @seriousme/openapi-schema-validator, which checks the document against
#     the official OpenAPI 3.1 JSON Schema.
# The Go tests of ./server/ keep the document true to the router and the
# handlers (every response they produce is validated against it with
# libopenapi-validator); this script keeps it valid OpenAPI for other
# tools. Both tools come from npm through npx, pinned, so a new release
# cannot break the build unannounced. Needs Node.js 20 or later.
#
# Usage: scripts/check-openapi.sh [path/to/openapi.json]
set -euo pipefail

readonly REDOCLY_CLI="@redocly/cli@2.77.0"
readonly SCHEMA_VALIDATOR="@seriousme/openapi-schema-validator@2.11.0"

# A path given on the command line is relative to the caller's directory.
doc="$(realpath -- "${1:-$(dirname "$0")/../server/openapi.json}")"
cd "$(dirname "$0")/.."

if [[ ! -f "$doc" ]]; then
	echo "check-openapi: $doc does not exist" >&2
	exit 2
fi
if ! command -v npx >/dev/null 2>&1; then
	echo "check-openapi: npx not found; install Node.js 20 or later" >&2
	exit 2
fi

echo "== redocly lint (recommended-strict) $doc"
# The document does not name the project's licence (Apache-2.0, LICENSE)
# yet, so info-license is the one rule skipped; every other rule of the
# strict set is an error.
npx --yes "$REDOCLY_CLI" lint --extends=recommended-strict --skip-rule=info-license \
	--format=stylish "$doc"

echo "== OpenAPI 3.1 JSON Schema $doc"
out="$(npx --yes --package="$SCHEMA_VALIDATOR" validate-api "$doc")"
echo "$out"
# validate-api prints {"valid": false, ...} for an invalid document; do not
# rely on its exit status alone.
if ! grep -Eq '"valid":[[:space:]]*true' <<<"$out"; then
	echo "check-openapi: $doc does not satisfy the OpenAPI 3.1 schema" >&2
	exit 1
fi
echo "check-openapi: $doc is valid"
