package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/storage"
	"github.com/api-perf/api-perf/tracing"
)

// TestStores: each store call is one client span under the caller's span,
// with the database's semantic attributes, exported as OTLP/HTTP protobuf
// that the collector's own request type decodes; an absent row is an
// answer (error.type), not a failed span.
func TestStores(t *testing.T) {
	collector := testenv.NewCollector(t)
	p, err := tracing.New(context.Background(), tracing.Config{
		Endpoint: collector.URL() + "/v1/traces", ServiceName: "stores-test", ServiceVersion: "v9",
		Headers: map[string]string{"Authorization": "Bearer t0ken"},
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := tracing.NewStores(db, db, p.TracerProvider(), tracing.Database{System: db.Dialect(), Name: "shop"})

	ctx, parent := p.TracerProvider().Tracer("test").Start(context.Background(), "parent")
	created, err := s.CreateProduct(ctx, apiperf.ProductInput{Name: "p", Price: 100, Stock: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Product(ctx, created.ID+1000); apiperf.ErrorCode(err) != apiperf.ENOTFOUND {
		t.Fatalf("unknown product: %v", err)
	}
	if _, err := apiperf.PlaceOrder(ctx, s, apiperf.OrderInput{ProductID: created.ID, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	// Outside any span: a root span of its own trace.
	if _, err := s.Orders(context.Background(), apiperf.OrderFilter{Page: apiperf.Page{Limit: 10}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	spans := map[string]testenv.Span{}
	for _, sp := range collector.Spans() {
		spans[sp.Attrs["code.function.name"]] = sp
		if sp.Service != "stores-test" {
			t.Errorf("span %s of service %q", sp.Name, sp.Service)
		}
	}
	psc := parent.SpanContext()
	for fn, want := range map[string]string{
		"storage.CreateProduct": "INSERT products",
		"storage.Product":       "SELECT products",
		"storage.PlaceOrders":   "INSERT orders",
	} {
		sp, ok := spans[fn]
		if !ok {
			t.Errorf("no span for %s in %+v", fn, collector.Spans())
			continue
		}
		if sp.Name != want || sp.Kind != "client" || sp.TraceID != psc.TraceID().String() || sp.ParentSpanID != psc.SpanID().String() ||
			sp.Attrs["db.system.name"] != "sqlite" || sp.Attrs["db.system"] != "sqlite" || sp.Attrs["db.namespace"] != "shop" ||
			!strings.HasPrefix(want, sp.Attrs["db.operation.name"]+" ") || !strings.HasSuffix(want, " "+sp.Attrs["db.collection.name"]) || sp.Error {
			t.Errorf("%s: %+v", fn, sp)
		}
	}
	if sp := spans["storage.Product"]; sp.Attrs["error.type"] != apiperf.ENOTFOUND {
		t.Errorf("absent product span: %+v", sp)
	}
	if sp := spans["storage.PlaceOrders"]; sp.Attrs["db.operation.batch.size"] != "1" {
		t.Errorf("order batch span: %+v", sp)
	}
	if sp := spans["storage.Orders"]; sp.ParentSpanID != "" || sp.TraceID == psc.TraceID().String() {
		t.Errorf("a call outside any span: %+v", sp)
	}
}

// TestStores_DatabaseFailure: a store call the database fails is an error span.
func TestStores_DatabaseFailure(t *testing.T) {
	collector := testenv.NewCollector(t)
	p, err := tracing.New(context.Background(), tracing.Config{Endpoint: collector.URL() + "/v1/traces"})
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	db.Close() // every call now fails
	s := tracing.NewStores(db, db, p.TracerProvider(), tracing.Database{System: "sqlite"})
	if _, err := s.Product(context.Background(), 1); err == nil {
		t.Fatal("a closed database answered")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if spans := collector.Spans(); len(spans) != 1 || !spans[0].Error {
		t.Fatalf("spans %+v", spans)
	}
}

// TestNew_CollectorRefuses: a collector's refusal is an export error (the
// SDK logs it and drops the batch), not a hang or a panic.
func TestNew_CollectorRefuses(t *testing.T) {
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer srv.Close()
	p, err := tracing.New(context.Background(), tracing.Config{Endpoint: srv.URL + "/v1/traces",
		Headers: map[string]string{"Authorization": "Bearer x"}, Sampler: nil})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "s", trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	if err := p.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("flush to a refusing collector: %v", err)
	}
	if auth != "Bearer x" {
		t.Errorf("Authorization %q: OTEL_EXPORTER_OTLP_HEADERS not sent", auth)
	}
	p.Shutdown(context.Background()) //nolint:errcheck // refused again
}

func TestParseSampler(t *testing.T) {
	for _, tc := range []struct{ name, arg, want string }{
		{"", "", "ParentBased{root:AlwaysOnSampler"},
		{"always_off", "", "AlwaysOffSampler"},
		{"traceidratio", "0.25", "TraceIDRatioBased{0.25}"},
		{"PARENTBASED_TRACEIDRATIO", "0.01", "ParentBased{root:TraceIDRatioBased{0.01}"},
	} {
		s, err := tracing.ParseSampler(tc.name, tc.arg)
		if err != nil || !strings.HasPrefix(s.Description(), tc.want) {
			t.Errorf("ParseSampler(%q, %q) = %v, %v; want %s", tc.name, tc.arg, s, err, tc.want)
		}
	}
	for _, bad := range [][2]string{{"sometimes", ""}, {"traceidratio", "-0.1"}, {"traceidratio", "x"}} {
		if _, err := tracing.ParseSampler(bad[0], bad[1]); err == nil {
			t.Errorf("ParseSampler(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestTracesEndpoint(t *testing.T) {
	for _, tc := range []struct{ base, signal, want string }{
		{"", "", ""},
		{"http://c:4318", "", "http://c:4318/v1/traces"},
		{"http://c:4318/", "", "http://c:4318/v1/traces"},
		{"https://c/otlp", "", "https://c/otlp/v1/traces"},
		{"http://c:4318", "http://d/x", "http://d/x"},
	} {
		if got, err := tracing.TracesEndpoint(tc.base, tc.signal); err != nil || got != tc.want {
			t.Errorf("TracesEndpoint(%q, %q) = %q, %v; want %q", tc.base, tc.signal, got, err, tc.want)
		}
	}
	for _, bad := range []string{"c:4318", "grpc://c:4317", "http://", "://x"} {
		if _, err := tracing.TracesEndpoint(bad, ""); err == nil {
			t.Errorf("TracesEndpoint(%q) accepted", bad)
		}
	}
}
