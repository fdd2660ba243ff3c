package limiter

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// FailurePolicy says what Fallback does when its primary limiter cannot
// decide.
type FailurePolicy int

const (
	// FailOpen decides with the in-process limiter: every replica then
	// enforces the policy on its own traffic only, which is looser than the
	// shared limit but keeps the API serving. It is the default.
	FailOpen FailurePolicy = iota
	// FailClosed returns an *apiperf.Error with code EUNAVAILABLE, which the
	// server answers with 503.
	FailClosed
)

// Defaults of FallbackOptions.
const (
	DefaultFallbackTimeout = 5 * time.Millisecond
	DefaultFallbackBackoff = 250 * time.Millisecond
)

// tripAfter is how many primary failures in a row switch Fallback to the
// in-process limiter until the next probe. One slow call under load should
// not flip every request; a dead server fails fast, so three are reached at
// once.
const tripAfter = 3

// FallbackOptions configures NewFallback.
type FallbackOptions struct {
	// Timeout bounds every call to the primary. Zero means
	// DefaultFallbackTimeout.
	Timeout time.Duration
	// Failure is the policy while the primary is failing; FailOpen by default.
	Failure FailurePolicy
	// Backoff is how long the primary is left alone after it failed before
	// one request probes it again. Zero means DefaultFallbackBackoff.
	Backoff time.Duration
	// Local is the in-process limiter used with FailOpen; nil means a new
	// one owned (and closed) by the Fallback, with MaxClients.
	Local *Local
	// MaxClients is the new Local's MaxClients (see Local).
	MaxClients int
	// Logger receives one line per state change; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives apiperf_ratelimit_fallbacks_total and
	// apiperf_ratelimit_decisions_total. Registering twice on the same
	// Registerer reuses the collectors already there; a conflicting
	// collector of either name is NewFallback's error.
	Registerer prometheus.Registerer
}

// Fallback runs a primary Limiter (Redis) under a short deadline and
// decides with an in-process Local, or refuses with EUNAVAILABLE, when the
// primary fails. After tripAfter failures in a row it stops calling the
// primary and probes it with a single request every Backoff, so an outage
// costs the deadline once per Backoff instead of on every request. State
// changes are logged once; fallbacks and decisions are counted. Tokens a
// batched Redis limiter already holds in process are still spent while
// Redis is down, under either policy: they are real reservations. An
// in-process bucket starts no fuller than the primary last reported it
// (with its debt not yet charged), so that a client that spent its burst
// in Redis, and can make Redis slow, does not find a fresh burst here.
type Fallback struct {
	primary   Limiter
	fast      fastDecider // primary's in-memory path, if it has one
	known     aheadKnower // primary's last word on a bucket, if it keeps one
	local     *Local
	ownsLocal bool
	failure   FailurePolicy
	timeout   time.Duration
	backoff   time.Duration
	log       *slog.Logger

	failures atomic.Int32 // consecutive primary failures
	down     atomic.Bool  // primary skipped until retryAt
	retryAt  atomic.Int64 // monoNanos of the next probe
	probing  atomic.Bool  // one request is probing the primary

	fallbacks        *prometheus.CounterVec
	fbTimeout, fbErr prometheus.Counter
	fbDown           prometheus.Counter
	decisions        *prometheus.CounterVec
	byPolicy         atomic.Pointer[map[string]*policyCounters]
	byPolicyMu       sync.Mutex
}

type policyCounters struct{ allowed, denied, failed prometheus.Counter }

var _ Limiter = (*Fallback)(nil)

// Fallback reasons, the values of the reason label.
const (
	reasonTimeout = "timeout" // the primary missed its deadline
	reasonError   = "error"   // the primary returned an error
	reasonDown    = "down"    // the primary was skipped while it is considered down
)

var errPrimaryDown = errors.New("rate limiter primary is down, waiting to probe it again")

// NewFallback wraps primary. See FallbackOptions for the defaults. It
// fails only when its metrics cannot be registered (see promreg).
func NewFallback(primary Limiter, opts FallbackOptions) (*Fallback, error) {
	f := &Fallback{
		primary: primary,
		local:   opts.Local,
		failure: opts.Failure,
		timeout: opts.Timeout,
		backoff: opts.Backoff,
		log:     opts.Logger,
	}
	f.fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiperf_ratelimit_fallbacks_total",
		Help: "Rate limit decisions not made by the primary limiter, by reason (timeout, error, down).",
	}, []string{"reason"})
	f.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiperf_ratelimit_decisions_total",
		Help: "Rate limit decisions by policy and outcome (allowed, denied, error).",
	}, []string{"policy", "decision"})
	if reg := opts.Registerer; reg != nil {
		var err error
		if f.fallbacks, err = promreg.Register(reg, f.fallbacks); err != nil {
			return nil, err
		}
		if f.decisions, err = promreg.Register(reg, f.decisions); err != nil {
			return nil, err
		}
	}
	f.fast, _ = primary.(fastDecider)
	f.known, _ = primary.(aheadKnower)
	if f.local == nil {
		f.local, f.ownsLocal = NewLocal(), true
		f.local.MaxClients = opts.MaxClients
	}
	if f.timeout <= 0 {
		f.timeout = DefaultFallbackTimeout
	}
	if f.backoff <= 0 {
		f.backoff = DefaultFallbackBackoff
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.fbTimeout = f.fallbacks.WithLabelValues(reasonTimeout)
	f.fbErr = f.fallbacks.WithLabelValues(reasonError)
	f.fbDown = f.fallbacks.WithLabelValues(reasonDown)
	f.byPolicy.Store(&map[string]*policyCounters{})
	return f, nil
}

// Allow implements Limiter.
func (f *Fallback) Allow(ctx context.Context, key string, p apiperf.RatePolicy, cost int) (apiperf.RateDecision, error) {
	if f.fast != nil {
		if r, ok, err := f.fast.tryAllow(key, p, cost); ok {
			if err == nil {
				f.count(p.Name, r.Allowed)
			}
			return r, err
		}
	}
	if f.down.Load() {
		if monoNanos() < f.retryAt.Load() || !f.probing.CompareAndSwap(false, true) {
			return f.fallback(ctx, key, p, cost, reasonDown, errPrimaryDown)
		}
		defer f.probing.Store(false)
	}

	pctx, cancel := context.WithTimeout(ctx, f.timeout)
	r, err := f.primary.Allow(pctx, key, p, cost)
	cancel()
	if err == nil {
		f.failures.Store(0)
		if f.down.CompareAndSwap(true, false) {
			f.log.Info("rate limiter recovered")
		}
		f.count(p.Name, r.Allowed)
		return r, nil
	}
	if apiperf.ErrorCode(err) == apiperf.EINVALID || ctx.Err() != nil {
		// A bad policy or cost is the caller's bug, and a caller that gave
		// up is no sign of the primary's health: neither trips anything.
		return apiperf.RateDecision{}, err
	}
	reason := reasonError
	if errors.Is(err, context.DeadlineExceeded) {
		reason = reasonTimeout
	}
	switch {
	case errors.Is(err, errWaited):
		// Waiting on another request's call: that call reports its own
		// failure, so this one neither trips nor counts.
	case f.down.Load():
		f.retryAt.Store(monoNanos() + int64(f.backoff)) // a failed probe
	case f.failures.Add(1) >= tripAfter:
		f.retryAt.Store(monoNanos() + int64(f.backoff))
		if f.down.CompareAndSwap(false, true) {
			msg := "rate limiter falling back to in-process"
			if f.failure == FailClosed {
				msg = "rate limiter failing closed"
			}
			f.log.Warn(msg, "reason", reason, "err", err)
		}
	}
	return f.fallback(ctx, key, p, cost, reason, err)
}

// fallback decides without the primary and counts it.
func (f *Fallback) fallback(ctx context.Context, key string, p apiperf.RatePolicy, cost int, reason string, cause error) (apiperf.RateDecision, error) {
	switch reason {
	case reasonTimeout:
		f.fbTimeout.Inc()
	case reasonError:
		f.fbErr.Inc()
	default:
		f.fbDown.Inc()
	}
	if f.failure == FailClosed {
		f.counters(p.Name).failed.Inc()
		if apiperf.ErrorCode(cause) == apiperf.EUNAVAILABLE {
			return apiperf.RateDecision{}, cause
		}
		return apiperf.RateDecision{}, unavailable(cause)
	}
	var ahead int64
	if f.known != nil {
		ahead, _ = f.known.knownAhead(key, p)
	}
	r, _, err := f.local.allowAfter(key, p, cost, ahead)
	if err == nil {
		f.count(p.Name, r.Allowed)
	}
	return r, err
}

func (f *Fallback) count(policy string, allowed bool) {
	c := f.counters(policy)
	if allowed {
		c.allowed.Inc()
	} else {
		c.denied.Inc()
	}
}

// counters returns the decision counters of one policy. Policies are few
// and fixed, so the map is copied on the rare first use of a name and read
// without a lock afterwards.
func (f *Fallback) counters(policy string) *policyCounters {
	if c := (*f.byPolicy.Load())[policy]; c != nil {
		return c
	}
	f.byPolicyMu.Lock()
	defer f.byPolicyMu.Unlock()
	old := *f.byPolicy.Load()
	if c := old[policy]; c != nil {
		return c
	}
	c := &policyCounters{
		allowed: f.decisions.WithLabelValues(policy, "allowed"),
		denied:  f.decisions.WithLabelValues(policy, "denied"),
		failed:  f.decisions.WithLabelValues(policy, "error"),
	}
	m := make(map[string]*policyCounters, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[policy] = c
	f.byPolicy.Store(&m)
	return c
}

// Close implements Limiter: it closes the primary and the in-process
// limiter if the Fallback created it.
func (f *Fallback) Close() {
	f.primary.Close()
	if f.ownsLocal {
		f.local.Close()
	}
}
