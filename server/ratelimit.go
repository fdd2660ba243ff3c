package server

import (
	"math"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
)

// The limiter returns decisions as numbers; this file turns them into HTTP.
//
// The RateLimit-Policy and RateLimit header values follow
// draft-ietf-httpapi-ratelimit-headers-10 (the current draft; -09 has the
// same syntax): each is a Structured Fields list whose members are a quoted
// policy name with parameters. RateLimit-Policy carries q (the quota) and w
// (its window in seconds); RateLimit carries r (the remaining quota) and t
// (seconds until the quota is fully available again).
//
// A GCRA policy maps onto them as follows: the quota is the burst, the most
// a client can spend at once, and the window is the time the policy takes
// to refill a whole burst (Burst intervals), so that q/w is the sustained
// rate. "100/1s,burst=200" is advertised as "read";q=200;w=2, which is both
// true statements: 200 at once, 100 per second over time.

// routeClass groups routes under one rate-limit policy.
type routeClass int

// The route classes: safe methods read, everything else writes.
const (
	classRead routeClass = iota
	classWrite
	numClasses
)

// limitClass is one route class's policy with what of its headers does not
// change from request to request, rendered once when the server is built.
type limitClass struct {
	policy apiperf.RatePolicy
	// header is the whole RateLimit-Policy value.
	header []byte
	// statePrefix starts every RateLimit value: the quoted name and ";r=".
	statePrefix []byte
}

func newLimitClass(p apiperf.RatePolicy) *limitClass {
	return &limitClass{
		policy:      p,
		header:      appendPolicyHeader(nil, p),
		statePrefix: append(appendSFString(nil, p.Name), ";r="...),
	}
}

// limitClasses renders the configured policies; a class whose policy is
// zero, or every class when there is no limiter, stays unlimited (nil).
func limitClasses(cfg *Config) [numClasses]*limitClass {
	var out [numClasses]*limitClass
	if cfg.Limiter == nil {
		return out
	}
	for class, p := range [numClasses]apiperf.RatePolicy{classRead: cfg.ReadLimit, classWrite: cfg.WriteLimit} {
		if p != (apiperf.RatePolicy{}) {
			out[class] = newLimitClass(p)
		}
	}
	return out
}

// rateLimit charges one request of lc's class to its client (the index of
// the API key it authenticated with, negative for none) and returns false
// when it has answered the request itself.
func (s *Server) rateLimit(ctx *fasthttp.RequestCtx, lc *limitClass, apiKey int) bool {
	var kb [80]byte
	return s.charge(ctx, lc, s.clientKey(ctx, apiKey, kb[:0]), "rate limit exceeded")
}

// authFailed answers a request that failed authentication: 401, after
// charging the failure to the client's address, or 429 once the address has
// spent its allowance of failures, so that keys cannot be guessed at speed.
// The address is charged whatever token was sent: a made-up token names no
// client.
func (s *Server) authFailed(ctx *fasthttp.RequestCtx) {
	if s.chargeAuthFailure(ctx) {
		s.writeError(ctx, errUnauthorized)
	}
}

// chargeAuthFailure charges one failed authentication to the client's
// address and returns false when it has answered 429 (or 503) itself.
func (s *Server) chargeAuthFailure(ctx *fasthttp.RequestCtx) bool {
	if s.authLimit == nil {
		return true
	}
	var kb [80]byte
	return s.charge(ctx, s.authLimit, s.appendAddrKey(kb[:0], s.clientIP(ctx)), "too many failed authentications")
}

// charge asks the limiter about one request of lc's policy for the client
// named key and sets the RateLimit headers. It answers 429 (or 503 when the
// limiter fails closed) itself, with detail, and returns false when the
// request must not proceed.
func (s *Server) charge(ctx *fasthttp.RequestCtx, lc *limitClass, key []byte, detail string) bool {
	d, err := s.cfg.Limiter.Allow(s.callContext(ctx), string(key), lc.policy, 1)
	if err != nil {
		if apiperf.ErrorCode(err) != apiperf.EUNAVAILABLE {
			// A policy the limiter will not apply is this server's
			// configuration at fault, not the client's request.
			err = &apiperf.Error{Code: apiperf.EINTERNAL, Message: "rate limiter misconfigured", Err: err}
		}
		s.writeError(ctx, err)
		return false
	}
	var hb [64]byte
	ctx.Response.Header.SetCanonical(hRateLimitPolicy, lc.header)
	ctx.Response.Header.SetCanonical(hRateLimit, appendRateLimitState(append(hb[:0], lc.statePrefix...), d))
	if d.Allowed {
		return true
	}
	secs := setRetryAfter(ctx, d.RetryAfter)
	s.problem(ctx, fasthttp.StatusTooManyRequests, detail+"; retry after "+strconv.FormatInt(secs, 10)+"s")
	return false
}

// appendPolicyHeader appends the RateLimit-Policy value of p to dst, e.g.
// `"read";q=200;w=2`.
func appendPolicyHeader(dst []byte, p apiperf.RatePolicy) []byte {
	dst = appendSFString(dst, p.Name)
	dst = append(dst, ";q="...)
	dst = strconv.AppendInt(dst, int64(p.Burst), 10)
	dst = append(dst, ";w="...)
	return strconv.AppendInt(dst, windowSeconds(p), 10)
}

// windowSeconds is the time p takes to refill a whole burst, Burst
// intervals, in seconds rounded up (saturating rather than overflowing).
func windowSeconds(p apiperf.RatePolicy) int64 {
	us := p.Interval().Microseconds()
	if us <= 0 || p.Burst <= 0 {
		return 0
	}
	if int64(p.Burst) > math.MaxInt64/us {
		return math.MaxInt64 / 1_000_000
	}
	return (int64(p.Burst)*us + 1e6 - 1) / 1e6
}

// appendRateLimitState appends what follows the policy name and ";r=" in a
// RateLimit value, e.g. `57;t=3`. It does not allocate when dst has room.
func appendRateLimitState(dst []byte, d apiperf.RateDecision) []byte {
	dst = strconv.AppendInt(dst, int64(max(d.Remaining, 0)), 10)
	dst = append(dst, ";t="...)
	return strconv.AppendInt(dst, ceilSeconds(d.ResetAfter), 10)
}

// setRetryAfter is the one place a Retry-After is written: after in whole
// seconds, rounded up so that a client waiting that long is not turned away
// again, and at least one. It returns the seconds written.
func setRetryAfter(ctx *fasthttp.RequestCtx, after time.Duration) int64 {
	secs := max(ceilSeconds(after), 1)
	var b [20]byte
	ctx.Response.Header.SetCanonical(hRetryAfter, strconv.AppendInt(b[:0], secs, 10))
	return secs
}

// ceilSeconds rounds d up to whole seconds, never below zero.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// appendSFString appends s as a Structured Fields string (RFC 8941 3.3.3):
// quoted, with backslash and double quote escaped. Characters outside
// printable ASCII are not allowed there and are dropped.
func appendSFString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
