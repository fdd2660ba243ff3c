package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/api-perf/api-perf/server/lambda"
	"github.com/api-perf/api-perf/tracing"
)

// tracer is the process's OpenTelemetry provider; nil when tracing is off,
// and every method works on nil, so that serve wires it unconditionally
// while an untraced process builds nothing.
type tracer struct{ p *tracing.Provider }

// openTracing builds the provider when an OTLP endpoint is configured.
func openTracing(ctx context.Context, cfg config, logger *slog.Logger) (*tracer, error) {
	if cfg.Tracing.Endpoint == "" {
		return nil, nil
	}
	tc := cfg.Tracing
	tc.ServiceVersion = buildVersion().Version
	p, err := tracing.New(ctx, tc)
	if err != nil {
		return nil, err
	}
	logger.Info("tracing: exporting spans over OTLP/HTTP", "endpoint", tc.Endpoint, "service", tc.ServiceName,
		"sampler", tc.Sampler.Description())
	return &tracer{p: p}, nil
}

// provider is the tracer provider, or nil when tracing is off.
func (t *tracer) provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.p.TracerProvider()
}

// close exports the spans still queued, for at most five seconds.
func (t *tracer) close(logger *slog.Logger) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.p.Shutdown(ctx); err != nil {
		logger.Warn("tracing: spans not exported at shutdown", "error", err)
	}
}

// flushing wraps a Lambda handler so that each invocation's spans are
// exported before it answers: between invocations the execution
// environment is frozen, and a batch waiting for its timer would wait
// until the next invocation, or forever.
func (t *tracer) flushing(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if t == nil {
		return h
	}
	return func(ctx *fasthttp.RequestCtx) {
		h(ctx)
		t.p.Flush(lambda.InvocationContext(ctx)) //nolint:errcheck // a failed export costs spans, not the answer
	}
}

// dbNamespace is the database name on the store spans (db.namespace): the
// MySQL schema, or nothing for the embedded SQLite file.
func dbNamespace(cfg config) string {
	if cfg.MySQLDSN == "" {
		return ""
	}
	c, err := mysql.ParseDSN(cfg.MySQLDSN)
	if err != nil {
		return ""
	}
	return c.DBName
}
