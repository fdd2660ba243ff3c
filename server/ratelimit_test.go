package server

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
)

func TestAppendPolicyHeader(t *testing.T) {
	for _, tc := range []struct {
		p    apiperf.RatePolicy
		want string
	}{
		{apiperf.RatePolicy{Name: "read", Rate: 100, Period: time.Second, Burst: 200}, `"read";q=200;w=2`},
		{apiperf.RatePolicy{Name: "write", Rate: 20, Period: time.Second, Burst: 40}, `"write";q=40;w=2`},
		{apiperf.RatePolicy{Name: "read", Rate: 20, Period: time.Minute, Burst: 20}, `"read";q=20;w=60`},
		{apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second, Burst: 5}, `"read";q=5;w=1`}, // 0.5s rounds up
		{apiperf.RatePolicy{Name: "read", Rate: 3, Period: time.Second, Burst: 3}, `"read";q=3;w=2`},  // 3 x 333334µs is just over 1s
		{apiperf.RatePolicy{Name: `a"b\c` + "\n", Rate: 1, Period: time.Second, Burst: 1}, `"a\"b\\c";q=1;w=1`},
		{apiperf.RatePolicy{Name: "huge", Rate: 1, Period: 24 * time.Hour, Burst: 1e9}, `"huge";q=1000000000;w=9223372036854`}, // saturates, never wraps,
	} {
		if got := string(appendPolicyHeader(nil, tc.p)); got != tc.want {
			t.Errorf("appendPolicyHeader(%+v) = %s, want %s", tc.p, got, tc.want)
		}
	}
}

func TestAppendRateLimitState(t *testing.T) {
	for _, tc := range []struct {
		d    apiperf.RateDecision
		want string
	}{
		{apiperf.RateDecision{Allowed: true, Remaining: 57, ResetAfter: 2100 * time.Millisecond}, `"read";r=57;t=3`},
		{apiperf.RateDecision{Allowed: true, Remaining: 199, ResetAfter: 10 * time.Millisecond}, `"read";r=199;t=1`},
		{apiperf.RateDecision{Remaining: 0, ResetAfter: 2 * time.Second, RetryAfter: 10 * time.Millisecond}, `"read";r=0;t=2`},
		{apiperf.RateDecision{Remaining: -3}, `"read";r=0;t=0`},
	} {
		lc := newLimitClass(apiperf.RatePolicy{Name: "read", Rate: 100, Period: time.Second, Burst: 200})
		if got := string(appendRateLimitState(lc.statePrefix, tc.d)); got != tc.want {
			t.Errorf("RateLimit for %+v = %s, want %s", tc.d, got, tc.want)
		}
	}
}

func TestSetRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Millisecond, "1"},
		{time.Second, "1"},
		{1500 * time.Millisecond, "2"},
		{0, "1"},
		{-time.Second, "1"},
		{30 * time.Minute, "1800"},
	} {
		var ctx fasthttp.RequestCtx
		setRetryAfter(&ctx, tc.d)
		if got := string(ctx.Response.Header.Peek("Retry-After")); got != tc.want {
			t.Errorf("Retry-After for %v = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestRateLimitHeaders_ZeroAllocs: what the server renders per request is
// appended into buffers it already has.
func TestRateLimitHeaders_ZeroAllocs(t *testing.T) {
	lc := newLimitClass(apiperf.RatePolicy{Name: "read", Rate: 100, Period: time.Second, Burst: 200})
	d := apiperf.RateDecision{Allowed: true, Limit: 200, Remaining: 57, ResetAfter: 2100 * time.Millisecond}
	var ctx fasthttp.RequestCtx
	buf := make([]byte, 0, 64)
	setRetryAfter(&ctx, time.Second) // the header's storage, as on a reused context
	if n := testing.AllocsPerRun(1000, func() {
		buf = appendRateLimitState(append(buf[:0], lc.statePrefix...), d)
		setRetryAfter(&ctx, 1500*time.Millisecond)
	}); n != 0 {
		t.Fatalf("rendering the rate-limit headers allocates %v times per request, want 0", n)
	}
}
