package limiter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A collector of another shape under one of the limiter's metric names is
// the constructor's error: neither a panic nor a limiter that silently
// reports nothing.

func TestNewRedis_MetricConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiperf_ratelimit_redis_calls_total", Help: "another",
	}, []string{"x"}))
	c := MustClient(t, redisAddr)
	if r, err := NewRedis(c, RedisOptions{Prefix: MustPrefix(t, c), Registerer: reg}); err == nil {
		r.Close()
		t.Fatal("NewRedis accepted a conflicting apiperf_ratelimit_redis_calls_total")
	}
	// The same limiter twice on one registry is no conflict.
	reg = prometheus.NewRegistry()
	for range 2 {
		newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Registerer: reg}).Close()
	}
}

func TestNewFallback_MetricConflict(t *testing.T) {
	for _, name := range []string{"apiperf_ratelimit_fallbacks_total", "apiperf_ratelimit_decisions_total"} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "another"}))
		if f, err := NewFallback(NewLocal(), FallbackOptions{Registerer: reg}); err == nil {
			f.Close()
			t.Errorf("NewFallback accepted a conflicting %s", name)
		}
	}
}
