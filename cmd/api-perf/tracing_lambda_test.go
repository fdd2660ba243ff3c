package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/server/lambda"
	"github.com/api-perf/api-perf/storage"
	"github.com/api-perf/api-perf/tracing"
)

// TestTracing_LambdaJoinsTrace: in Lambda mode a request joins the trace of
// the event's traceparent, or, without one, of its X-Amzn-Trace-Id (X-Ray:
// the trace id is the root's 8 and 24 hex digits, the parent its Parent),
// and each invocation's spans are exported before it answers (a frozen
// environment would hold them), without a shutdown.
func TestTracing_LambdaJoinsTrace(t *testing.T) {
	collector := testenv.NewCollector(t)
	cfg, err := loadConfig(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL()}))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tp, err := openTracing(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.close(logger)
	db, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stores := tracing.NewStores(db, db, tp.provider(), tracing.Database{System: db.Dialect()})
	srv, err := server.New(server.Config{Products: stores, Orders: stores, TracerProvider: tp.provider(), Logger: logger,
		Invocation: lambda.InvocationContext})
	if err != nil {
		t.Fatal(err)
	}
	h := lambda.NewHandler(tp.flushing(srv.Handler()), lambda.Options{Logger: srv.FastHTTPLogger()})

	for _, tc := range []struct {
		name       string
		headers    map[string]string
		trace      string
		parentSpan string
	}{
		{"Traceparent", map[string]string{
			"traceparent":     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
		}, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"},
		{"XAmznTraceId", map[string]string{
			"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
		}, "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := events.APIGatewayV2HTTPRequest{
				Version: "2.0", RouteKey: "$default", RawPath: "/products/42", Headers: tc.headers,
				RequestContext: events.APIGatewayV2HTTPRequestContext{
					Stage: "$default", RequestID: "req-" + tc.name, DomainName: "abc.execute-api.eu-west-1.amazonaws.com",
					HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET", Path: "/products/42", SourceIP: "203.0.113.9"},
				},
			}
			payload, _ := json.Marshal(ev)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := h.Invoke(ctx, payload)
			if err != nil {
				t.Fatal(err)
			}
			var res events.APIGatewayV2HTTPResponse
			if err := json.Unmarshal(out, &res); err != nil || res.StatusCode != 404 {
				t.Fatalf("answer %s: %v", out, err)
			}
			// Invoke has returned: the spans must be at the collector already.
			var req, store *testenv.Span
			for _, s := range collector.Spans() {
				if s.TraceID != tc.trace {
					continue
				}
				switch s.Kind {
				case "server":
					req = &s
				case "client":
					store = &s
				}
			}
			if req == nil || req.ParentSpanID != tc.parentSpan || req.Name != "GET /products/{id}" ||
				req.Attrs["http.response.status_code"] != "404" {
				t.Fatalf("request span in trace %s: %+v; all: %+v", tc.trace, req, collector.Spans())
			}
			if store == nil || store.ParentSpanID != req.SpanID || store.Attrs["db.system.name"] != "sqlite" {
				t.Errorf("store span under %s: %+v", req.SpanID, store)
			}
		})
	}
}
