package limiter

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"

	apiperf "github.com/api-perf/api-perf"
	"github.com/prometheus/client_golang/prometheus"
)

// counterValue reads one counter from reg; labels must match exactly.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestFallback_RedisStopped kills the limiter's own redis-server in the
// middle of the test and restarts it on the same port.
func TestFallback_RedisStopped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failure FailurePolicy
		logMsg  string
	}{
		{"Open", FailOpen, "rate limiter falling back to in-process"},
		{"Closed", FailClosed, "rate limiter failing closed"},
	} {
		for _, plain := range []bool{true, false} {
			name := tc.name + "/Batched"
			if plain {
				name = tc.name + "/Plain"
			}
			t.Run(name, func(t *testing.T) {
				verifyNoLeaks(t)
				srv := testenv.StartRedis(t)
				c := MustClient(t, srv.Addr())
				primary := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Plain: plain})
				if err := primary.Preload(context.Background()); err != nil {
					t.Fatal(err)
				}
				reg := prometheus.NewRegistry()
				var logs testenv.Buffer
				f := newFallback(t, primary, FallbackOptions{
					// Generous, so that a slow call on a busy machine is not
					// taken for an outage; a dead server fails at once.
					Timeout:    time.Second,
					Failure:    tc.failure,
					Backoff:    100 * time.Millisecond,
					Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
					Registerer: reg,
				})
				t.Cleanup(f.Close)
				p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: 10 * time.Second, Burst: 5}
				ctx := context.Background()
				fallbacks := func() float64 {
					var n float64
					for _, r := range []string{reasonTimeout, reasonError, reasonDown} {
						n += counterValue(t, reg, "apiperf_ratelimit_fallbacks_total", map[string]string{"reason": r})
					}
					return n
				}

				for range 3 {
					if _, err := f.Allow(ctx, "c", p, 1); err != nil {
						t.Fatalf("Redis up: %v", err)
					}
				}
				if n := fallbacks(); n != 0 {
					t.Fatalf("%v fallbacks while Redis is up: timeout %v error %v", n, counterValue(t, reg, "apiperf_ratelimit_fallbacks_total", map[string]string{"reason": reasonTimeout}), counterValue(t, reg, "apiperf_ratelimit_fallbacks_total", map[string]string{"reason": reasonError}))
				}

				srv.Kill()
				callsBefore := primary.calls.Load()
				start := time.Now()
				allowed := 0
				for i := range 50 {
					r, err := f.Allow(ctx, "c", p, 1)
					switch tc.failure {
					case FailOpen:
						if err != nil {
							t.Fatalf("request %d with Redis down, failing open: %v", i, err)
						}
						if r.Allowed {
							allowed++
						}
					case FailClosed:
						if apiperf.ErrorCode(err) != apiperf.EUNAVAILABLE {
							t.Fatalf("request %d with Redis down, failing closed: err %v, want EUNAVAILABLE", i, err)
						}
					}
				}
				if took := time.Since(start); took > 200*time.Millisecond {
					t.Fatalf("50 requests with Redis down took %v: the deadline is paid on every request", took)
				}
				// Batched, the in-process bucket starts from the last reply
				// (3 of the 5 spent); plain, the limiter keeps no view of it.
				want := 2
				if plain {
					want = 5
				}
				if tc.failure == FailOpen && allowed != want {
					t.Fatalf("in-process fallback allowed %d of 50, want %d", allowed, want)
				}
				if calls := primary.calls.Load() - callsBefore; calls > tripAfter+2 {
					t.Fatalf("%d calls to the dead primary, want it skipped after %d failures", calls, tripAfter)
				}
				if n := fallbacks(); n != 50 {
					t.Fatalf("fallback counter %v, want 50", n)
				}
				if n := counterValue(t, reg, "apiperf_ratelimit_fallbacks_total", map[string]string{"reason": reasonDown}); n < 40 {
					t.Fatalf("only %v fallbacks counted as down", n)
				}
				if n := logs.Count(tc.logMsg); n != 1 {
					t.Fatalf("%q logged %d times, want once:\n%s", tc.logMsg, n, logs.String())
				}

				srv.Start()
				deadline := time.Now().Add(10 * time.Second)
				for logs.Count("rate limiter recovered") == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("no recovery 10s after Redis came back; logs:\n%s", logs.String())
					}
					f.Allow(ctx, "c", p, 1)
					time.Sleep(10 * time.Millisecond)
				}
				// The client's other connections may still be the dead
				// server's and fail once each; after that every request is
				// decided by Redis again.
				for ok := 0; ok < 5; {
					if time.Now().After(deadline) {
						t.Fatalf("requests still fall back 10s after Redis came back; logs:\n%s", logs.String())
					}
					before, callsBefore := fallbacks(), primary.calls.Load()
					_, err := f.Allow(ctx, "c", p, 1)
					// Batched, a cached refusal is the primary's decision too.
					if err == nil && fallbacks() == before && (!plain || primary.calls.Load() == callsBefore+1) {
						ok++
					} else {
						ok = 0
					}
				}
				if n := counterValue(t, reg, "apiperf_ratelimit_decisions_total", map[string]string{"policy": "read", "decision": "allowed"}); n < 3 {
					t.Fatalf("allowed decisions counter %v", n)
				}
			})
		}
	}
}

// stallingLimiter stands for a primary that hangs until its deadline, or
// answers at once when healthy is set.
type stallingLimiter struct {
	healthy atomic.Bool
	calls   atomic.Int64
}

func (s *stallingLimiter) Allow(ctx context.Context, _ string, p apiperf.RatePolicy, _ int) (apiperf.RateDecision, error) {
	s.calls.Add(1)
	if s.healthy.Load() {
		return apiperf.RateDecision{Allowed: true, Limit: p.Burst}, nil
	}
	<-ctx.Done()
	return apiperf.RateDecision{}, unavailable(ctx.Err())
}

func (s *stallingLimiter) Close() {}

func TestFallback_Timeout(t *testing.T) {
	verifyNoLeaks(t)
	slow := &stallingLimiter{}
	reg := prometheus.NewRegistry()
	f := newFallback(t, slow, FallbackOptions{Backoff: 50 * time.Millisecond, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&testenv.Buffer{}, nil))})
	defer f.Close()
	p := apiperf.RatePolicy{Name: "write", Rate: 10, Period: time.Second, Burst: 100}
	ctx := context.Background()

	start := time.Now()
	for range tripAfter {
		if r, err := f.Allow(ctx, "c", p, 1); err != nil || !r.Allowed {
			t.Fatalf("failing open on a timeout: %+v, %v", r, err)
		}
	}
	if took := time.Since(start); took < tripAfter*DefaultFallbackTimeout || took > tripAfter*DefaultFallbackTimeout+100*time.Millisecond {
		t.Fatalf("%d timed-out calls took %v, want about %v each", tripAfter, took, DefaultFallbackTimeout)
	}
	if n := counterValue(t, reg, "apiperf_ratelimit_fallbacks_total", map[string]string{"reason": reasonTimeout}); n != tripAfter {
		t.Fatalf("timeout fallbacks %v, want %d", n, tripAfter)
	}
	// Down now: answered without waiting on the primary.
	start = time.Now()
	for range 100 {
		f.Allow(ctx, "c", p, 1)
	}
	if took := time.Since(start); took > 20*time.Millisecond || slow.calls.Load() != tripAfter {
		t.Fatalf("100 calls while down took %v and made %d primary calls", took, slow.calls.Load()-tripAfter)
	}
	// After the backoff a single probe finds the primary healthy again.
	slow.healthy.Store(true)
	time.Sleep(60 * time.Millisecond)
	for range 10 {
		f.Allow(ctx, "c", p, 1)
	}
	if got := slow.calls.Load(); got != tripAfter+10 {
		t.Fatalf("primary calls %d after recovery, want every request to reach it (%d)", got, tripAfter+10)
	}

	// A caller that gives up is not the primary's failure.
	slow.healthy.Store(false)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Allow(cctx, "c", p, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err %v, want context.Canceled", err)
	}
	if f.down.Load() || f.failures.Load() != 0 {
		t.Fatal("a cancelled caller counted as a primary failure")
	}
}

func TestFallback_Decisions(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFallback(t, NewLocal(), FallbackOptions{Registerer: reg})
	defer f.Close()
	// A second Fallback on the same registry shares the collectors.
	g := newFallback(t, NewLocal(), FallbackOptions{Registerer: reg})
	defer g.Close()
	p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 2}
	for range 5 {
		mustAllow(t, f, "c", p, 1)
	}
	mustAllow(t, g, "c", p, 1)
	if _, err := f.Allow(context.Background(), "c", p, 0); apiperf.ErrorCode(err) != apiperf.EINVALID {
		t.Fatalf("cost 0: %v, want EINVALID", err)
	}
	allowed := counterValue(t, reg, "apiperf_ratelimit_decisions_total", map[string]string{"policy": "read", "decision": "allowed"})
	denied := counterValue(t, reg, "apiperf_ratelimit_decisions_total", map[string]string{"policy": "read", "decision": "denied"})
	if allowed != 3 || denied != 3 {
		t.Fatalf("decisions allowed %v denied %v, want 3 and 3", allowed, denied)
	}
}
