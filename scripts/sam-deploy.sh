#!/usr/bin/env bash
# Deploys api-perf to AWS Lambda with SAM (template.yaml), from the arm64 zip
# that scripts/build-lambda.sh builds, with its configuration from Parameter
# Store.
#
#   ARCHES=arm64 VERSION=v1.2.3 scripts/build-lambda.sh
#   VERSION=v1.2.3 SUBNET_IDS=subnet-a,subnet-b SECURITY_GROUP_IDS=sg-1 \
#     scripts/sam-deploy.sh [more sam deploy options]
#
# Every parameter under PARAMETER_PATH (default /api-perf/; SecureStrings
# decrypted) is one setting, named after its last path segment, and becomes
# the template parameter of that setting: /api-perf/MYSQL_DSN is passed as
# MysqlDsn. A name that is not a setting stops the deployment (a typo would
# otherwise be ignored); a setting without a parameter keeps the binary's
# default. Under GitHub Actions the SecureString values are masked in the log.
#
# Environment: VERSION, SUBNET_IDS and SECURITY_GROUP_IDS (comma-separated)
# are required; STACK_NAME (default api-perf), PARAMETER_PATH, S3_BUCKET (the
# bucket for the code; default: SAM's managed bucket), DEPLOYMENT_TYPE
# (default: the template's gradual canary). DRY_RUN=1 prints the sam deploy
# command, secrets replaced by ***, instead of running it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${VERSION:?set VERSION to the release being deployed, e.g. v1.2.3}"
: "${SUBNET_IDS:?set SUBNET_IDS to the subnet ids of the function, comma-separated}"
: "${SECURITY_GROUP_IDS:?set SECURITY_GROUP_IDS to the security group ids of the function, comma-separated}"
stack=${STACK_NAME:-api-perf}
path=${PARAMETER_PATH:-/api-perf/}
package=dist/api-perf-lambda-arm64.zip

if [[ -z "${DRY_RUN:-}" && ! -s $package ]]; then
	echo "sam-deploy: $package is missing; run ARCHES=arm64 VERSION=$VERSION scripts/build-lambda.sh" >&2
	exit 1
fi

# template_parameter NAME prints the template's parameter for setting NAME:
# MYSQL_DSN -> MysqlDsn (cmd/api-perf's TestSAMTemplate generates them so).
template_parameter() {
	local part rest out=
	local -a parts
	IFS=_ read -ra parts <<<"$1"
	for part in "${parts[@]}"; do
		rest=${part:1}
		out+=${part:0:1}${rest,,}
	done
	printf '%s\n' "$out"
}

overrides=("Version=$VERSION" "SubnetIds=$SUBNET_IDS" "SecurityGroupIds=$SECURITY_GROUP_IDS")
shown=("${overrides[@]}")
if [[ -n "${DEPLOYMENT_TYPE:-}" ]]; then
	overrides+=("DeploymentType=$DEPLOYMENT_TYPE")
	shown+=("DeploymentType=$DEPLOYMENT_TYPE")
fi

# NUL-separated name, type and value of each parameter: values may hold any
# character but NUL. The CLI follows the pagination itself.
parameters=$(mktemp)
trap 'rm -f "$parameters"' EXIT
aws ssm get-parameters-by-path --path "$path" --recursive --with-decryption --output json |
	jq -j '.Parameters[] | (.Name | split("/") | last), "\u0000", .Type, "\u0000", .Value, "\u0000"' >"$parameters"

count=0
bad=()
while IFS= read -r -d '' name && IFS= read -r -d '' type && IFS= read -r -d '' value; do
	param=$(template_parameter "$name")
	if ! grep -q "^  $param:\$" template.yaml || [[ ! $name =~ ^[A-Z][A-Z0-9_]*$ ]]; then
		bad+=("$path$name is not a setting of api-perf (api-perf help lists them)")
		continue
	fi
	# sam deploy's parser keeps a backslash and cannot carry a double quote
	# inside a quoted value; no setting needs either.
	if [[ $value == *'"'* || $value == *\\* ]]; then
		bad+=("$path$name holds a double quote or a backslash, which sam deploy cannot pass")
		continue
	fi
	if [[ $type == SecureString && -n $value && -n "${GITHUB_ACTIONS:-}" ]]; then
		echo "::add-mask::$value"
	fi
	overrides+=("$param=\"$value\"")
	if [[ $type == SecureString ]]; then
		shown+=("$param=***")
	else
		shown+=("$param=\"$value\"")
	fi
	count=$((count + 1))
done <"$parameters"

if ((${#bad[@]} > 0)); then
	printf 'sam-deploy: %s\n' "${bad[@]}" >&2
	exit 1
fi
echo "sam-deploy: $count settings from $path"

s3=(--resolve-s3)
if [[ -n "${S3_BUCKET:-}" ]]; then
	s3=(--s3-bucket "$S3_BUCKET" --s3-prefix "api-perf/$VERSION")
fi
cmd=(sam deploy --template-file template.yaml --stack-name "$stack"
	--capabilities CAPABILITY_IAM --no-confirm-changeset --no-fail-on-empty-changeset
	"${s3[@]}" "$@" --parameter-overrides)
if [[ -n "${DRY_RUN:-}" ]]; then
	printf '%q ' "${cmd[@]}" "${shown[@]}"
	echo
	exit 0
fi
"${cmd[@]}" "${overrides[@]}"
