# api-perf: the two commands that matter are `make run` and `make test`.
SHELL := /bin/bash
GOBIN ?= $(shell go env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

STATICCHECK_VERSION ?= v0.8.2
# The emulator publishes no release tags to the module proxy: pin its commit.
RIE_VERSION ?= v0.0.0-20261030222936-bef5c4ba774d
# Fuzzing budgets are execution counts, about 10 s each here: with a duration, Go 1.26's
# fuzz coordinator can fail a clean run with "context deadline exceeded" when the time runs
# out mid-execution (golang/go#75804, fixed in Go 1.27). FUZZTIME=30s (or =20000x) overrides
# every target.
FUZZTIME ?=
FUZZ_CREATE_PRODUCT ?= 5000x
FUZZ_CREATE_ORDER ?= 10000x
FUZZ_IDEMPOTENCY_KEY ?= 4000x
FUZZ_LAMBDA_INVOKE ?= 50000x

# Every build of the binary uses these: lambda.norpc leaves out
# aws-lambda-go's legacy RPC mode (net/rpc alone keeps ~15 MB of dead code),
# and the -X values feed `api-perf version` and apiperf_build_info.
GO_TAGS := lambda.norpc
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_TIME ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
GO_LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildTime=$(BUILD_TIME)

.PHONY: run build test services tools vet tidy lint unit fuzz ledger lambda check-deploy check-rules check-openapi k6-smoke ci bench compare clean

## run: serve on the embedded default (SQLite under ./data, in-process cache and limiter)
run:
	go run -tags $(GO_TAGS) ./cmd/api-perf

## build: the static binary as bin/api-perf, stamped with version, revision and build time
build:
	CGO_ENABLED=0 go build -trimpath -tags $(GO_TAGS) -ldflags "$(GO_LDFLAGS)" -o bin/api-perf ./cmd/api-perf

## test: the whole suite: services up, vet, staticcheck, race tests with coverage
test: services tools vet lint unit

services:
	@bash scripts/services.sh

## tools: install the Go tools the checks use, unless already installed
tools:
	@command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@command -v aws-lambda-rie >/dev/null || go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)
	@command -v promtool >/dev/null || ! command -v apt-get >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v haproxy >/dev/null || ! command -v apt-get >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null; }

vet: tidy
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	cd bench/aside && go vet ./...

## tidy: fail when go mod tidy would change go.mod or go.sum of any of the three modules
tidy:
	go mod tidy -diff
	cd bench/aside && go mod tidy -diff
	cd k8s/validate && go mod tidy -diff

lint:
	staticcheck ./...

unit:
	go test -race -count=1 -timeout 15m -covermode=atomic -coverprofile=coverage.out ./...
	@go tool cover -func=coverage.out | awk '/^total:/ {print "total coverage: " $$3}'

## fuzz: a short run of each request-decoding fuzz target (the corpus lives in server/testdata/fuzz)
fuzz:
	go test -run '^$$' -fuzz '^FuzzCreateProduct$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_CREATE_PRODUCT)) -fuzzminimizetime 200x ./server/
	go test -run '^$$' -fuzz '^FuzzCreateOrder$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_CREATE_ORDER)) -fuzzminimizetime 200x ./server/
	go test -run '^$$' -fuzz '^FuzzIdempotencyKey$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_IDEMPOTENCY_KEY)) -fuzzminimizetime 200x ./server/
	go test -run '^$$' -fuzz '^FuzzHandler_Invoke$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_LAMBDA_INVOKE)) -fuzzminimizetime 200x ./server/lambda/

## ledger: the long ledger test: the real binary through fault-injecting proxies, with restarts
## (docs/idempotency.md); LEDGER_SEED=<seed> replays a run's faults. The suite runs a short version.
ledger: services
	LEDGER_LONG=1 go test -count=1 -run TestLedger -timeout 30m -v ./cmd/api-perf/

## lambda: build bootstrap zips for provided.al2023 (arm64 and amd64) under dist/
lambda:
	bash scripts/build-lambda.sh

check-deploy:
	bash scripts/check-deploy.sh

## check-rules: promtool check rules and promtool test rules on the PrometheusRule (check-deploy runs them too)
check-rules: tools
	cd k8s/validate && go test -count=1 -run 'PrometheusRule' -v ./... | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|SUCCESS|FAILED'

check-openapi:
	bash scripts/check-openapi.sh

k6-smoke:
	bash scripts/k6-smoke.sh

## ci: what .ci/run runs: the test suite, then fuzzing, deployment, OpenAPI and k6 checks
ci: test fuzz check-deploy check-openapi k6-smoke

## compare: the side-by-side performance comparison (see docs/performance.md)
compare:
	go run ./bench/cmd/compare

bench:
	go test -run '^$$' -bench . -benchmem ./server/ ./cache/ ./limiter/ ./server/lambda/

clean:
	rm -rf data dist bin coverage.out
