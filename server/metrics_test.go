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
	m := newHTTPMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	rm := m.route("/api/v1/products/{id}", "GET")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rm.observe(200, 42*time.Microsecond)
		}
	})
}

func TestRouteMetrics_ObserveAllocs(t *testing.T) {
	m := newHTTPMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	rm := m.route("/products/{id}", "GET")
	rm.observe(200, time.Millisecond) // resolves the 200 series
	if n := testing.AllocsPerRun(1000, func() { rm.observe(200, time.Millisecond) }); n != 0 {
		t.Fatalf("recording a request allocates %.1f times", n)
	}
}
