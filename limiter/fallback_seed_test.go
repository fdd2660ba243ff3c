package limiter

import (
	"context"
	"log/slog"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
)

// TestFallback_NoFreshBurstWhenRedisDies: a client spends its whole burst
// with Redis deciding, then Redis dies. The in-process fallback must not
// hand the same client a second, fresh burst: it starts from what this
// process last learned of the bucket (its TAT and the debt not yet
// charged). Before, the fallback's bucket started full, so a client that
// could make Redis slow or unreachable doubled its allowance on every
// replica.
func TestFallback_NoFreshBurstWhenRedisDies(t *testing.T) {
	for _, debt := range []int{0, 1} {
		t.Run(map[int]string{0: "Exact", 1: "Debt1"}[debt], func(t *testing.T) {
			verifyNoLeaks(t)
			srv := testenv.StartRedis(t)
			c := MustClient(t, srv.Addr())
			primary := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Debt: debt})
			if err := primary.Preload(context.Background()); err != nil {
				t.Fatal(err)
			}
			f := newFallback(t, primary, FallbackOptions{
				Timeout: time.Second,
				Backoff: 100 * time.Millisecond,
				Logger:  slog.New(slog.NewTextHandler(&testenv.Buffer{}, nil)),
			})
			t.Cleanup(f.Close)
			// One unit every 10 minutes: nothing refills during the test.
			p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: 10 * time.Minute, Burst: 20}
			ctx := context.Background()
			allowed := 0
			for i := range p.Burst {
				r, err := f.Allow(ctx, "c", p, 1)
				if err != nil {
					t.Fatalf("request %d with Redis up: %v", i, err)
				}
				if r.Allowed {
					allowed++
				}
			}
			if allowed != p.Burst {
				t.Fatalf("Redis allowed %d of the burst of %d", allowed, p.Burst)
			}

			srv.Kill()
			allowed = 0
			for i := range 50 {
				r, err := f.Allow(ctx, "c", p, 1)
				if err != nil {
					t.Fatalf("request %d with Redis down, failing open: %v", i, err)
				}
				if r.Allowed {
					allowed++
				}
			}
			// With debt the process may have allowed one unit Redis never
			// charged (its charge went out as Redis died): that one is owed,
			// so nothing more may be allowed either way.
			if allowed != 0 {
				t.Fatalf("after the burst was spent, the fallback allowed %d more of 50 (a fresh burst)", allowed)
			}
		})
	}
}
