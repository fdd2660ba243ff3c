package apiperf

import (
	"context"
	"time"
)

// RatePolicy is one rate limit: at most Burst requests at once, refilled
// at Rate requests per Period (the generic cell rate algorithm). Name
// identifies the policy wherever it shows: in the limiter's keys, in
// metric labels and in the RateLimit headers ("read", "write"). The zero
// RatePolicy means no limit.
type RatePolicy struct {
	Name   string
	Rate   int
	Period time.Duration
	Burst  int
}

// Interval is the policy's emission interval, Period/Rate, rounded up to a
// whole microsecond. Every limiter counts in these steps, so a policy whose
// period does not divide evenly by its rate is enforced very slightly
// stricter than written, never looser, and the window the server
// advertises (Burst intervals) is the one the limiter keeps. It is zero
// for a policy without a positive rate and period.
func (p RatePolicy) Interval() time.Duration {
	if p.Rate < 1 || p.Period <= 0 {
		return 0
	}
	us := p.Period.Microseconds()
	return time.Duration((us+int64(p.Rate)-1)/int64(p.Rate)) * time.Microsecond
}

// RateDecision is what a limiter decided about one request, in numbers
// only: turning it into headers and a status is the server's business.
//
// Limit is the policy's burst. Remaining is how many more requests of cost
// 1 the client could make right now. RetryAfter is zero when the request
// was allowed, and otherwise the time until the same request would be.
// ResetAfter is the time until the client's allowance is whole again.
type RateDecision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	RetryAfter time.Duration
	ResetAfter time.Duration
}

// RateLimiter decides requests. Allow charges cost units to the client
// named key under policy p. An error means that no decision was made: the
// limiter's store failed (EUNAVAILABLE), or the policy or the cost is one
// no wait can satisfy, such as a cost above the burst (EINVALID). A caller
// must not take an error for a refusal.
type RateLimiter interface {
	Allow(ctx context.Context, key string, p RatePolicy, cost int) (RateDecision, error)
}
