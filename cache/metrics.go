package cache

import (
	"github.com/prometheus/client_golang/prometheus"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/promreg"
)

// Label values of apiperf_cache_requests_total{result}. A Local hit is a
// client_hit: it is served from process memory, as a client-side hit is.
const (
	resultClientHit   = "client_hit"
	resultRedisHit    = "redis_hit"
	resultMiss        = "miss"
	resultNegativeHit = "negative_hit"
)

// Label values of apiperf_cache_loads_total{outcome}. "discarded" is a
// successful load whose value was not stored because the key was invalidated
// while it ran.
const (
	outcomeOK        = "ok"
	outcomeNotFound  = "not_found"
	outcomeError     = "error"
	outcomeDiscarded = "discarded"
)

// Label values of apiperf_cache_fallbacks_total{reason}: why a Get called the
// loader without Redis.
const (
	reasonTimeout     = "timeout"      // a Redis call passed Options.Timeout
	reasonRedisError  = "redis_error"  // a Redis call failed otherwise
	reasonCircuitOpen = "circuit_open" // Redis is considered down; not asked
	reasonLeaseWait   = "lease_wait"   // another replica's load took longer than LeaseTTL
)

// metrics holds every counter child resolved once, so that counting on the
// hot path is one atomic add and never allocates.
type metrics struct {
	clientHit, redisHit, miss, negativeHit            prometheus.Counter
	loadOK, loadNotFound, loadError, loadDiscarded    prometheus.Counter
	fbTimeout, fbRedisError, fbCircuitOpen, fbLeaseWt prometheus.Counter
	invalidateErrors                                  prometheus.Counter
}

// newMetrics builds the counters and registers them with reg when it is not
// nil. Several caches may share one registry: an already registered
// collector of the same shape is reused; any other clash is the error.
func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
	defer apiperf.Wrap(&err, "cache metrics")
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiperf_cache_requests_total",
		Help: "Cache Gets by result: client_hit (process memory), redis_hit, miss, negative_hit.",
	}, []string{"result"})
	loads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiperf_cache_loads_total",
		Help: "Loader calls by outcome: ok, not_found, error, discarded (invalidated while loading).",
	}, []string{"outcome"})
	fallbacks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiperf_cache_fallbacks_total",
		Help: "Gets that called the loader without Redis, by reason.",
	}, []string{"reason"})
	invalidateErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apiperf_cache_invalidate_errors_total",
		Help: "Invalidate calls that could not reach Redis; the keys stay stale until their TTL.",
	})
	if reg != nil {
		if requests, err = promreg.Register(reg, requests); err != nil {
			return nil, err
		}
		if loads, err = promreg.Register(reg, loads); err != nil {
			return nil, err
		}
		if fallbacks, err = promreg.Register(reg, fallbacks); err != nil {
			return nil, err
		}
		if invalidateErrors, err = promreg.Register(reg, invalidateErrors); err != nil {
			return nil, err
		}
	}
	return &metrics{
		clientHit:        requests.WithLabelValues(resultClientHit),
		redisHit:         requests.WithLabelValues(resultRedisHit),
		miss:             requests.WithLabelValues(resultMiss),
		negativeHit:      requests.WithLabelValues(resultNegativeHit),
		loadOK:           loads.WithLabelValues(outcomeOK),
		loadNotFound:     loads.WithLabelValues(outcomeNotFound),
		loadError:        loads.WithLabelValues(outcomeError),
		loadDiscarded:    loads.WithLabelValues(outcomeDiscarded),
		fbTimeout:        fallbacks.WithLabelValues(reasonTimeout),
		fbRedisError:     fallbacks.WithLabelValues(reasonRedisError),
		fbCircuitOpen:    fallbacks.WithLabelValues(reasonCircuitOpen),
		fbLeaseWt:        fallbacks.WithLabelValues(reasonLeaseWait),
		invalidateErrors: invalidateErrors,
	}, nil
}

// load counts one loader call by the error it returned.
func (m *metrics) load(err error) {
	switch {
	case err == nil:
		m.loadOK.Inc()
	case isNotFound(err):
		m.loadNotFound.Inc()
	default:
		m.loadError.Inc()
	}
}

// fallback counts one Get that bypassed Redis.
func (m *metrics) fallback(reason string) {
	switch reason {
	case reasonTimeout:
		m.fbTimeout.Inc()
	case reasonCircuitOpen:
		m.fbCircuitOpen.Inc()
	case reasonLeaseWait:
		m.fbLeaseWt.Inc()
	default:
		m.fbRedisError.Inc()
	}
}
