// Package limiter decides whether a client may make a request, using the
// generic cell rate algorithm (GCRA).
//
// GCRA keeps one number per client and policy: the theoretical arrival time
// (TAT) of the next request. A policy (apiperf.RatePolicy) of Rate requests
// per Period has an
// emission interval T = Period/Rate; a request of cost n is allowed when
// max(TAT, now) + n*T <= now + Burst*T, and then TAT moves forward by n*T.
// Over any interval of length t this allows at most Burst + t/T requests,
// which is the guarantee every implementation here keeps.
//
// All arithmetic is done in integer microseconds, in steps of the policy's
// Interval (rounded up to a whole microsecond), so a policy whose period
// does not divide evenly by its rate is enforced very slightly stricter than
// written, never looser.
//
// Three implementations satisfy apiperf.RateLimiter directly: Local
// (in-process, for the embedded mode and as the fallback), Redis (one Lua
// script on Redis, optionally with per-process batches of reserved tokens,
// see batch.go), and Fallback, which runs another Limiter under a short
// deadline and decides in-process when it fails. They return decisions as
// numbers; headers and statuses are the server's.
package limiter

import (
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// Limiter is what every implementation here satisfies: an
// apiperf.RateLimiter that owns something to release. Close releases it;
// it never closes a Redis client passed in.
type Limiter interface {
	apiperf.RateLimiter
	Close()
}

// fastDecider is implemented by limiters that can often decide from
// process memory alone. Fallback asks them first so that a decision that
// needs no I/O does not pay for a deadline context.
type fastDecider interface {
	// tryAllow decides without blocking or I/O when it can; ok is false when
	// the decision needs the backing store.
	tryAllow(key string, p apiperf.RatePolicy, cost int) (r apiperf.RateDecision, ok bool, err error)
}

// aheadKnower is implemented by limiters that remember, per bucket, what
// the backing store last said. Fallback seeds its in-process decisions
// with it, so that an outage does not refill every bucket.
type aheadKnower interface {
	// knownAhead is how far the bucket's TAT was ahead of now, in
	// microseconds, by the limiter's last knowledge; ok is false when it
	// knows nothing of the bucket.
	knownAhead(key string, p apiperf.RatePolicy) (ahead int64, ok bool)
}

// maxWindowMicros bounds Burst*T so that every number the Lua script handles
// (Redis time in microseconds plus the window) stays far inside the 2^53
// range where a Lua double is an exact integer.
const maxWindowMicros = 1 << 50

// interval returns the policy's emission interval in microseconds after
// checking the policy and the cost. A cost above the burst is EINVALID: no
// wait would ever let it through, so it is no decision to make.
func interval(p *apiperf.RatePolicy, cost int) (int64, error) {
	if p.Rate < 1 || p.Burst < 1 || p.Period <= 0 {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit policy %q: rate, period and burst must be positive", p.Name)
	}
	if cost < 1 {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit cost must be at least 1, got %d", cost)
	}
	if cost > p.Burst {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit cost %d exceeds the burst %d of policy %q", cost, p.Burst, p.Name)
	}
	if p.Period.Microseconds() < int64(p.Rate) {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit policy %q: more than one request per microsecond", p.Name)
	}
	t := p.Interval().Microseconds()
	if int64(p.Burst) > maxWindowMicros/t {
		return 0, apiperf.Errorf(apiperf.EINVALID, "rate limit policy %q: burst times interval too large", p.Name)
	}
	return t, nil
}

// micros converts integer microseconds to a Duration.
func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// nanosDuration converts a difference of monoNanos readings to a Duration.
func nanosDuration(ns int64) time.Duration { return time.Duration(ns) }
