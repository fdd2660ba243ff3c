package server

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkRouteMetrics_Observe is what recording one request costs the
// hot path: a histogram observation and a counter increment on series
// resolved before the request.
func BenchmarkRouteMetrics_Observe(b *testing.B) {
	m, err := newHTTPMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	if err != nil {
		b.Fatal(err)
	}
	rm := m.route("/api/v1/products/{id}", "GET")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rm.observe(200, 42*time.Microsecond)
		}
	})
}

func TestRouteMetrics_ObserveAllocs(t *testing.T) {
	m, err := newHTTPMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	rm := m.route("/products/{id}", "GET")
	rm.observe(200, time.Millisecond) // resolves the 200 series
	if n := testing.AllocsPerRun(1000, func() { rm.observe(200, time.Millisecond) }); n != 0 {
		t.Fatalf("recording a request allocates %.1f times", n)
	}
}

// A collector of another shape under one of the server's metric names is
// New's error, not a panic; the same server twice on one registry shares
// the series.
func TestNew_MetricConflict(t *testing.T) {
	for _, name := range []string{
		"apiperf_http_requests_total", "apiperf_http_request_duration_seconds",
		"apiperf_http_requests_in_flight", "apiperf_http_connections_rejected_total",
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: "another"}, []string{"x"}))
		if s, err := New(Config{Registerer: reg}); err == nil || s != nil {
			t.Errorf("%s: New returned %v, %v; want a conflict error", name, s, err)
		}
	}
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := New(Config{Registerer: reg}); err != nil {
			t.Fatalf("the same server twice on one registry: %v", err)
		}
	}
}

// A New that fails after registering its HTTP metrics leaves them on the
// registry: scraping it then must not call into the server that was never
// built (its in-flight gauge read a nil fasthttp.Server and panicked).
func TestNew_FailedNewLeavesAScrapableRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiperf_http_connections_rejected_total", Help: "another"}, []string{"x"}))
	if _, err := New(Config{Registerer: reg}); err == nil {
		t.Fatal("New accepted a conflicting connection metric")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "apiperf_http_requests_in_flight" {
			found = true
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Fatalf("in flight %v for a server that never ran", v)
			}
		}
	}
	if !found {
		t.Fatal("no in-flight gauge gathered")
	}
}
