# syntax=docker/dockerfile:1
#
# api-perf container image.
#
# Targets:
#   dev   the Go toolchain running `go run ./cmd/api-perf` on the mounted source
#         (docker-compose.dev.yml mounts the work tree over /src).
#   prod  (default, last stage) a static binary on distroless, non-root.
#
# Build:  docker build --target prod -t api-perf:local .
#         docker buildx build --platform linux/amd64,linux/arm64 --target prod .
#
# The build stage runs on the build machine's platform and cross-compiles for
# the target platform, so a multi-arch image needs no emulation.

ARG GO_VERSION=1.26

# ---------------------------------------------------------------------------
# base: module download, shared by the dev and build stages.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS base
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

# ---------------------------------------------------------------------------
# dev: the toolchain; the source is expected to be mounted at /src.
FROM golang:${GO_VERSION} AS dev
WORKDIR /src
ENV HTTP_ADDR=:8080 \
    METRICS_ADDR=:9090 \
    DATA_DIR=/src/data
COPY go.mod go.sum ./
# No cache mount here: the modules stay in the image, and Docker copies them
# into docker-compose.dev.yml's empty go-mod-cache volume on first use.
RUN go mod download
COPY . .
EXPOSE 8080 9090
CMD ["go", "run", "-tags=lambda.norpc", "./cmd/api-perf"]

# ---------------------------------------------------------------------------
# build: the static production binary.
FROM base AS build
# Set by BuildKit from --platform (the build needs BuildKit for its mounts).
ARG TARGETOS
ARG TARGETARCH
# Stamped into the binary (api-perf version, apiperf_build_info). The build
# context has no .git, so without them the binary says dev and unknown.
ARG VERSION=dev
ARG REVISION=
ARG CREATED=
# scripts/check-deploy.sh reads these two lines to build the same binary
# outside Docker; keep each value on one line, in double quotes.
# lambda.norpc leaves out aws-lambda-go's legacy RPC mode, whose net/rpc
# import alone keeps about 15 MB of otherwise dead code in the binary.
ARG GO_BUILDFLAGS="-trimpath -tags=lambda.norpc"
ARG GO_LDFLAGS="-s -w"
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build ${GO_BUILDFLAGS} -ldflags="${GO_LDFLAGS} -X main.version=${VERSION} -X main.revision=${REVISION} -X main.buildTime=${CREATED}" \
      -o /out/api-perf ./cmd/api-perf && \
    mkdir -p /out/data

# ---------------------------------------------------------------------------
# prod: distroless static (CA certificates, tzdata, /etc/passwd with the
# nonroot user 65532); no shell, so the health check is the binary itself.
FROM gcr.io/distroless/static-debian12:nonroot AS prod
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="api-perf" \
      org.opencontainers.image.description="High-throughput products and orders REST API" \
      org.opencontainers.image.source="https://github.com/api-perf/api-perf" \
      org.opencontainers.image.url="https://github.com/api-perf/api-perf" \
      org.opencontainers.image.documentation="https://github.com/api-perf/api-perf/blob/main/docs/deploying.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/api-perf /usr/local/bin/api-perf
# DATA_DIR only matters in embedded (SQLite) mode; it must be writable by nonroot.
COPY --from=build --chown=65532:65532 /out/data /data
ENV HTTP_ADDR=:8080 \
    METRICS_ADDR=:9090 \
    DATA_DIR=/data
EXPOSE 8080 9090
# The numeric form of distroless's "nonroot" user: Kubernetes can only verify
# runAsNonRoot against a numeric UID.
USER 65532:65532
# No --start-period: interval x retries already allows 30 s to start, and
# compose and Kubernetes set their own start-up budgets.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["/usr/local/bin/api-perf", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/api-perf"]
