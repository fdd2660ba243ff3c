package limiter

import (
	"strconv"
	"time"
)

// The RateLimit-Policy and RateLimit header values follow
// draft-ietf-httpapi-ratelimit-headers-10 (the current draft; -09 has the
// same syntax): each is a Structured Fields list whose members are a quoted
// policy name with parameters. RateLimit-Policy carries q (the quota) and w
// (its window in seconds); RateLimit carries r (the remaining quota) and t
// (seconds until the quota is fully available again).
//
// A GCRA policy maps onto them as follows: the quota is the burst, the most
// a client can spend at once, and the window is the time the policy takes
// to refill a whole burst (Burst x Period/Rate), so that q/w is the
// sustained rate. "100/1s,burst=200" is advertised as "read";q=200;w=2,
// which is both true statements: 200 at once, 100 per second over time.

// AppendPolicyHeader appends the RateLimit-Policy value of p to dst, e.g.
// `"read";q=200;w=2`. It does not allocate when dst has room.
func AppendPolicyHeader(dst []byte, p Policy) []byte {
	dst = appendSFString(dst, p.Name)
	dst = append(dst, ";q="...)
	dst = strconv.AppendInt(dst, int64(p.Burst), 10)
	dst = append(dst, ";w="...)
	var window time.Duration
	if t, err := p.interval(1); err == nil {
		window = micros(int64(p.Burst) * t)
	} else {
		window = p.Period
	}
	return strconv.AppendInt(dst, ceilSeconds(window), 10)
}

// AppendRateLimitHeader appends the RateLimit value for the decision r under
// p to dst, e.g. `"read";r=57;t=3`. It does not allocate when dst has room.
func AppendRateLimitHeader(dst []byte, p Policy, r Result) []byte {
	dst = appendSFString(dst, p.Name)
	dst = append(dst, ";r="...)
	dst = strconv.AppendInt(dst, int64(max(r.Remaining, 0)), 10)
	dst = append(dst, ";t="...)
	return strconv.AppendInt(dst, ceilSeconds(r.ResetAfter), 10)
}

// AppendRetryAfter appends the Retry-After value (whole seconds, rounded up
// so that a client waiting that long is allowed) for a refused decision. It
// appends nothing for RetryNever, whose request no wait can make acceptable.
func AppendRetryAfter(dst []byte, r Result) []byte {
	if r.RetryAfter < 0 {
		return dst
	}
	return strconv.AppendInt(dst, max(ceilSeconds(r.RetryAfter), 1), 10)
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
