package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/tracing"
)

// tracedServer is benchServer with tracing on under sampler ("ratio" for
// parentbased_traceidratio), exporting to a collector that discards.
func tracedServer(b *testing.B, ratio string) fasthttp.RequestHandler {
	b.Helper()
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck // a sink
	}))
	b.Cleanup(sink.Close)
	sampler, err := tracing.ParseSampler("parentbased_traceidratio", ratio)
	if err != nil {
		b.Fatal(err)
	}
	p, err := tracing.New(context.Background(), tracing.Config{Endpoint: sink.URL + "/v1/traces", ServiceName: "bench", Sampler: sampler})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Shutdown(context.Background()) }) //nolint:errcheck // a sink
	cfg := benchConfig(b, 100, true)
	cfg.TracerProvider = p.TracerProvider()
	return newServer(b, cfg).Handler()
}

// BenchmarkServer_GetProductTraced is the cached read with tracing on: 1%
// of traces sampled (the production setting), and all of them.
func BenchmarkServer_GetProductTraced(b *testing.B) {
	for _, ratio := range []string{"0.01", "1"} {
		b.Run("ratio="+ratio, func(b *testing.B) {
			benchRoute(b, tracedServer(b, ratio), "GET", "/products/42", nil, 200)
		})
	}
}
