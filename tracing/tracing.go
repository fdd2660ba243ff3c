// Package tracing sets up OpenTelemetry tracing: a tracer provider that
// exports spans over OTLP/HTTP (protobuf) in batches (see otlp.go), and the
// spans of the store calls. It is used only when an OTLP endpoint is configured; with
// none, cmd builds no provider at all and every instrumented path keeps its
// untraced code, so tracing off costs nothing.
//
// The server's request spans live in package server and the Redis spans come
// from rueidisotel (see cache.NewTracedClient); this package owns the
// provider they share.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Config is the tracing configuration, parsed by cmd from the SDK's
// standard OTEL_* variables.
type Config struct {
	// Endpoint is the full URL spans are POSTed to, such as
	// http://collector:4318/v1/traces.
	Endpoint string
	// Headers are sent with every export (OTEL_EXPORTER_OTLP_HEADERS).
	Headers map[string]string
	// ServiceName and ServiceVersion name the service on every span.
	ServiceName, ServiceVersion string
	// Sampler decides which traces are recorded; nil means
	// parentbased_always_on, the SDK's default.
	Sampler sdktrace.Sampler
	// ExportTimeout bounds one export; zero means 10s.
	ExportTimeout time.Duration
	// BatchTimeout is the longest a finished span waits before it is
	// exported; zero means 5s (the SDK's default). Tests shorten it.
	BatchTimeout time.Duration
}

// Provider is a tracer provider that exports over OTLP/HTTP.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// New builds a Provider for cfg. It does not connect: the first export
// does, and an unreachable collector costs dropped spans, never requests.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("tracing: no OTLP endpoint")
	}
	if cfg.ExportTimeout == 0 {
		cfg.ExportTimeout = 10 * time.Second
	}
	exp, err := otlptrace.New(ctx, newOTLPClient(cfg.Endpoint, cfg.Headers, cfg.ExportTimeout))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(cfg.ServiceVersion))
	sampler := cfg.Sampler
	if sampler == nil {
		sampler = sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
	var bopts []sdktrace.BatchSpanProcessorOption
	if cfg.BatchTimeout > 0 {
		bopts = append(bopts, sdktrace.WithBatchTimeout(cfg.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, bopts...),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	return &Provider{tp: tp}, nil
}

// TracerProvider is the provider the instrumented packages take.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Flush exports the finished spans now. Lambda calls it after each
// invocation: a frozen execution environment exports nothing.
func (p *Provider) Flush(ctx context.Context) error { return p.tp.ForceFlush(ctx) }

// Shutdown exports what is left and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error { return p.tp.Shutdown(ctx) }

// Protocols are the OTEL_EXPORTER_OTLP_PROTOCOL values this build exports
// with. gRPC would add a second transport stack to the binary for no gain:
// every OTLP collector also accepts http/protobuf (on port 4318).
var Protocols = []string{"http/protobuf"}

// TracesEndpoint resolves the export URL the way the OTLP exporter
// specification does: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (signal) is used
// as it is; OTEL_EXPORTER_OTLP_ENDPOINT (base) gets /v1/traces appended to
// its path. Empty when both are empty: tracing is off.
func TracesEndpoint(base, signal string) (string, error) {
	raw, isBase := signal, false
	if raw == "" {
		raw, isBase = base, true
	}
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http:// or https:// URL such as http://collector:4318", raw)
	}
	if isBase {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}

// ParseHeaders parses OTEL_EXPORTER_OTLP_HEADERS: comma-separated
// key=value pairs, values percent-encoded.
func ParseHeaders(s string) (map[string]string, error) {
	h := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, errors.New("must be comma-separated key=value pairs")
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("the value of %s is not percent-encoded", k)
		}
		h[k] = val
	}
	return h, nil
}

// ParseSampler builds the sampler OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG name, as the SDK specification defines them:
// always_on, always_off, traceidratio, and their parentbased_ forms, which
// follow the caller's sampling decision when a request carries one. arg is
// the ratio of the traceidratio samplers (empty means 1).
func ParseSampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := 1.0
	if arg != "" {
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio between 0 and 1", arg)
		}
		ratio = r
	}
	switch strings.ToLower(name) {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio), nil
	case "parentbased_always_on", "":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: %q is not one of always_on, always_off, traceidratio, "+
		"parentbased_always_on, parentbased_always_off, parentbased_traceidratio", name)
}
