package limiter

import (
	"testing"
	"time"
)

func TestAppendPolicyHeader(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Name: "read", Rate: 100, Period: time.Second, Burst: 200}, `"read";q=200;w=2`},
		{Policy{Name: "write", Rate: 20, Period: time.Second, Burst: 40}, `"write";q=40;w=2`},
		{Policy{Name: "read", Rate: 20, Period: time.Minute, Burst: 20}, `"read";q=20;w=60`},
		{Policy{Name: "read", Rate: 10, Period: time.Second, Burst: 5}, `"read";q=5;w=1`}, // 0.5s rounds up
		{Policy{Name: "read", Rate: 3, Period: time.Second, Burst: 3}, `"read";q=3;w=2`},  // 3 x 333334µs is just over 1s
		{Policy{Name: `a"b\c` + "\n", Rate: 1, Period: time.Second, Burst: 1}, `"a\"b\\c";q=1;w=1`},
	} {
		if got := string(AppendPolicyHeader(nil, tc.p)); got != tc.want {
			t.Errorf("AppendPolicyHeader(%+v) = %s, want %s", tc.p, got, tc.want)
		}
	}
}

func TestAppendRateLimitHeader(t *testing.T) {
	p := Policy{Name: "read", Rate: 100, Period: time.Second, Burst: 200}
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{Allowed: true, Remaining: 57, ResetAfter: 2100 * time.Millisecond}, `"read";r=57;t=3`},
		{Result{Allowed: true, Remaining: 199, ResetAfter: 10 * time.Millisecond}, `"read";r=199;t=1`},
		{Result{Remaining: 0, ResetAfter: 2 * time.Second, RetryAfter: 10 * time.Millisecond}, `"read";r=0;t=2`},
		{Result{Remaining: -3}, `"read";r=0;t=0`},
	} {
		if got := string(AppendRateLimitHeader(nil, p, tc.r)); got != tc.want {
			t.Errorf("AppendRateLimitHeader(%+v) = %s, want %s", tc.r, got, tc.want)
		}
	}
}

func TestAppendRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Millisecond, "1"},
		{time.Second, "1"},
		{1500 * time.Millisecond, "2"},
		{0, "1"},
		{RetryNever, ""},
	} {
		if got := string(AppendRetryAfter(nil, Result{RetryAfter: tc.d})); got != tc.want {
			t.Errorf("AppendRetryAfter(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestHeaders_ZeroAllocs(t *testing.T) {
	p := Policy{Name: "read", Rate: 100, Period: time.Second, Burst: 200}
	r := Result{Allowed: true, Limit: 200, Remaining: 57, ResetAfter: 2100 * time.Millisecond}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(1000, func() {
		buf = AppendPolicyHeader(buf[:0], p)
		buf = AppendRateLimitHeader(buf[:0], p, r)
		buf = AppendRetryAfter(buf[:0], r)
	}); n != 0 {
		t.Fatalf("header appenders allocate %v times per call, want 0", n)
	}
}

func TestLocal_ZeroAllocs(t *testing.T) {
	l := NewLocal()
	p := Policy{Name: "read", Rate: 1000000, Period: time.Second, Burst: 1000000}
	mustAllow(t, l, "client-1", p, 1) // the first request creates the key
	if n := testing.AllocsPerRun(1000, func() { mustAllow(t, l, "client-1", p, 1) }); n != 0 {
		t.Fatalf("Local.Allow on a known key allocates %v times, want 0", n)
	}
}
