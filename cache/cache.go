// Package cache is the cache-aside layer of api-perf. It stores opaque byte
// values (the server caches exact response bodies) and knows nothing of what
// they mean.
//
// Two implementations satisfy Cache: Redis, which keeps values in Redis and
// serves hot keys from rueidis client-side caching (process memory, no network
// hop, dropped by Redis's invalidation push when the key changes), and Local,
// an in-process variant for the embedded default that runs without Redis.
//
// Both keep one cache-aside protocol, written once (protocol.go): a missing
// key is loaded once per process (singleflight), and a value loaded before
// an Invalidate is never stored after it: a load holds a lease on the key,
// an invalidation deletes the lease, and the loaded value is stored only if
// the lease is still there (compare-and-set). Redis also shares the lease
// between replicas, so a cold key is loaded once across all of them. Both
// read time on their hit paths from one coarse clock (clock.go).
package cache

import (
	"fmt"
	"log/slog"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/prometheus/client_golang/prometheus"
)

// How Get treats its loader (an apiperf.LoadFunc): an ENOTFOUND from it is
// remembered for Options.NegativeTTL, and later Gets return an
// *apiperf.Error{Code: apiperf.ENOTFOUND} without calling it; any other
// error is returned to the callers that shared the load and is not cached.
// The loader's context carries the first caller's values but not its
// cancellation, and ends after Options.LeaseTTL.

// Cache is what cmd wires into the server: apiperf.Cache, whose Get never
// fails because the cache itself is unavailable (it then calls the loader
// directly), plus Close.
type Cache interface {
	apiperf.Cache
	// Close releases what the cache started. It does not close a
	// rueidis.Client that was handed to NewRedis.
	Close()
}

// Options configure both implementations. The zero value of a field selects
// its default.
type Options struct {
	// Prefix starts every Redis key; the cache key follows in a hash tag, so
	// "apiperf:c:" and "product:42" give "apiperf:c:{product:42}". Default
	// "apiperf:c:". Local ignores it.
	Prefix string
	// TTL bounds how long a value lives, in Redis and client-side. Default 60s.
	TTL time.Duration
	// NegativeTTL is how long an absence (ENOTFOUND from load) is remembered.
	// Default 5s; a negative value turns negative caching off.
	NegativeTTL time.Duration
	// Timeout is the deadline of one Redis round trip (a call may get up to
	// a quarter more: hits share one deadline context). Past it, Get loads
	// directly and Redis counts as down until a probe succeeds. Default 50ms.
	Timeout time.Duration
	// LeaseTTL bounds one load: the loader's context is cancelled after it,
	// and a lease left by a crashed replica expires after it. Default 3s.
	LeaseTTL time.Duration
	// RetryInterval is how often Redis is probed while it is considered
	// down; between probes Gets load directly without waiting for it.
	// Default 1s.
	RetryInterval time.Duration
	// MaxEntries bounds Local's map, past it arbitrary entries are dropped,
	// and Redis's near map, which starts over when full. Default 100000.
	// rueidis bounds the memory of its own client-side cache.
	MaxEntries int
	// Logger receives state changes (Redis down, Redis back) and
	// invalidation failures. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the cache metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Default values of Options.
const (
	DefaultPrefix        = "apiperf:c:"
	DefaultTTL           = 60 * time.Second
	DefaultNegativeTTL   = 5 * time.Second
	DefaultTimeout       = 50 * time.Millisecond
	DefaultLeaseTTL      = 3 * time.Second
	DefaultRetryInterval = time.Second
	DefaultMaxEntries    = 100_000
)

// maxAttempts bounds how often one Get loads again because an invalidation
// arrived while it was loading.
const maxAttempts = 3

// withDefaults fills the zero fields and rejects values that cannot work.
func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.TTL < time.Millisecond:
		return o, fmt.Errorf("cache: TTL %v is shorter than 1ms", o.TTL)
	case o.Timeout < 0:
		return o, fmt.Errorf("cache: negative Timeout %v", o.Timeout)
	case o.LeaseTTL < time.Millisecond:
		return o, fmt.Errorf("cache: LeaseTTL %v is shorter than 1ms", o.LeaseTTL)
	case o.RetryInterval < 0:
		return o, fmt.Errorf("cache: negative RetryInterval %v", o.RetryInterval)
	case o.MaxEntries < 0:
		return o, fmt.Errorf("cache: negative MaxEntries %d", o.MaxEntries)
	}
	return o, nil
}

// negativeEnabled reports whether absences are cached at all.
func (o *Options) negativeEnabled() bool { return o.NegativeTTL > 0 }
