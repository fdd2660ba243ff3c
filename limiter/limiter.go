// Package limiter decides whether a client may make a request, using the
// generic cell rate algorithm (GCRA).
//
// GCRA keeps one number per client and policy: the theoretical arrival time
// (TAT) of the next request. A policy of Rate requests per Period has an
// emission interval T = Period/Rate; a request of cost n is allowed when
// max(TAT, now) + n*T <= now + Burst*T, and then TAT moves forward by n*T.
// Over any interval of length t this allows at most Burst + t/T requests,
// which is the guarantee every implementation here keeps.
//
// All arithmetic is done in integer microseconds. The emission interval is
// rounded up to a whole microsecond, so a policy whose period does not divide
// evenly by its rate is enforced very slightly stricter than written, never
// looser.
//
// Three implementations share the Limiter interface: Local (in-process, for
// the embedded mode and as the fallback), Redis (one Lua script on Redis,
// optionally with per-process batches of reserved tokens, see batch.go), and
// Fallback, which runs another Limiter under a short deadline and decides
// in-process when it fails.
package limiter

import (
	"context"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// RetryNever is the RetryAfter of a request whose cost exceeds the policy's
// burst: such a request can never be allowed, however long the client waits.
// A server should answer it with 422 (the request itself is unacceptable) or
// with 429 and no Retry-After, never with a Retry-After computed from it.
const RetryNever time.Duration = -1

// Policy is one GCRA policy: at most Burst requests at once, refilled at
// Rate requests per Period. Name identifies the policy in Redis keys,
// metrics labels and the RateLimit headers ("read", "write").
type Policy struct {
	Name   string
	Rate   int
	Period time.Duration
	Burst  int
}

// Result is the outcome of one decision.
//
// Limit is the policy's burst. Remaining is how many more requests of cost 1
// the client could make right now. RetryAfter is zero when the request was
// allowed; when it was refused it is the time until the same request would be
// allowed, or RetryNever when it never will be. ResetAfter is the time until
// the client's bucket is full again.
type Result struct {
	Allowed    bool
	Limit      int
	Remaining  int
	RetryAfter time.Duration
	ResetAfter time.Duration
}

// Limiter decides requests. Allow charges cost units to key under policy p
// and reports the decision. An error means no decision could be made (the
// backing store failed, or the policy or cost is invalid, with code
// apiperf.EINVALID); the caller must not treat it as a refusal. Close
// releases what the Limiter owns; it never closes a Redis client passed in.
type Limiter interface {
	Allow(ctx context.Context, key string, p Policy, cost int) (Result, error)
	Close()
}

// fastDecider is implemented by limiters that can often decide from
// process memory alone. Fallback asks them first so that a decision that
// needs no I/O does not pay for a deadline context.
type fastDecider interface {
	// tryAllow decides without blocking or I/O when it can; ok is false when
	// the decision needs the backing store.
	tryAllow(key string, p Policy, cost int) (r Result, ok bool, err error)
}

// maxWindowMicros bounds Burst*T so that every number the Lua script handles
// (Redis time in microseconds plus the window) stays far inside the 2^53
// range where a Lua double is an exact integer.
const maxWindowMicros = 1 << 50

// interval returns the policy's emission interval in microseconds, rounded
// up, after checking the policy and the cost.
func (p *Policy) interval(cost int) (int64, error) {
	if p.Rate < 1 || p.Burst < 1 || p.Period <= 0 {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit policy %q: rate, period and burst must be positive", p.Name)
	}
	if cost < 1 {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit cost must be at least 1, got %d", cost)
	}
	period := p.Period.Microseconds()
	t := (period + int64(p.Rate) - 1) / int64(p.Rate)
	if period < int64(p.Rate) {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit policy %q: more than one request per microsecond", p.Name)
	}
	if int64(p.Burst) > maxWindowMicros/t {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit policy %q: burst times interval too large", p.Name)
	}
	return t, nil
}

// never is the result for a cost that exceeds the burst.
func never(burst, remaining int, reset int64) Result {
	return Result{Limit: burst, Remaining: remaining, RetryAfter: RetryNever, ResetAfter: micros(reset)}
}

// micros converts integer microseconds to a Duration.
func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// nanosDuration converts a difference of monoNanos readings to a Duration.
func nanosDuration(ns int64) time.Duration { return time.Duration(ns) }
