package server

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/api-perf/api-perf/internal/promreg"
)

// httpMetrics are the request counters and latency histograms, labelled by
// route template (never the raw path, so random URLs cannot create series).
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// latencyBuckets resolve sub-millisecond latencies: a cached read is tens
// of microseconds, a database write a few milliseconds.
var latencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// newHTTPMetrics registers the request metrics. inflight is read at scrape
// time (fasthttp already counts the requests it is serving), so the hot
// path pays nothing for it. A second server on the same registry shares
// the first's series (in flight then counts the first's requests only); a
// conflicting collector of one of these names is the error.
func newHTTPMetrics(reg prometheus.Registerer, inflight func() float64) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiperf_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiperf_http_request_duration_seconds",
			Help:    "Time from routing a request to its handler returning, by route template and method.",
			Buckets: latencyBuckets,
		}, []string{"route", "method"}),
	}
	if reg != nil {
		var err error
		if m.requests, err = promreg.Register(reg, m.requests); err != nil {
			return nil, err
		}
		if m.duration, err = promreg.Register(reg, m.duration); err != nil {
			return nil, err
		}
		if _, err = promreg.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apiperf_http_requests_in_flight",
			Help: "Requests being served now.",
		}, inflight)); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// routeMetrics are one route's pre-resolved series, so recording a request
// costs no label lookup: the histogram is bound at registration and each
// status code's counter is resolved once, on first use.
type routeMetrics struct {
	m        *httpMetrics
	route    string
	method   string
	duration prometheus.Observer
	byStatus [600]atomic.Pointer[prometheus.Counter]
}

func (m *httpMetrics) route(route, method string) *routeMetrics {
	return &routeMetrics{m: m, route: route, method: method, duration: m.duration.WithLabelValues(route, method)}
}

func (r *routeMetrics) observe(status int, elapsed time.Duration) {
	r.duration.Observe(elapsed.Seconds())
	if status < 100 || status >= len(r.byStatus) {
		status = 599
	}
	c := r.byStatus[status].Load()
	if c == nil {
		counter := r.m.requests.WithLabelValues(r.route, r.method, strconv.Itoa(status))
		c = &counter
		r.byStatus[status].Store(c)
	}
	(*c).Inc()
}

// requestStart is when fasthttp began serving the request (it reads the
// clock once per request already); a context built outside a server, as
// in benchmarks, has none and falls back to now.
func requestStart(ctx *fasthttp.RequestCtx) time.Time {
	if t := ctx.Time(); !t.IsZero() {
		return t
	}
	return time.Now()
}
