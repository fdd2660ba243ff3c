package cache

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	apiperf "github.com/api-perf/api-perf"
)

// The behaviour Local shares with Redis is in cache_test.go; these are its
// own limits.

func TestLocal_MaxEntries(t *testing.T) {
	verifyNoLeaks(t)
	l := newLocal(t, Options{MaxEntries: 100})
	defer l.Close()
	src := newSource("v")
	for i := 0; i < 1000; i++ {
		if got := mustGet(t, l, fmt.Sprintf("k%d", i), src.load); got != "v" {
			t.Fatalf("Get = %q", got)
		}
	}
	if n := l.size.Load(); n > 100 {
		t.Fatalf("%d entries kept, want at most MaxEntries (100)", n)
	}
	var counted int64
	l.entries.Range(func(any, any) bool { counted++; return true })
	if counted != l.size.Load() {
		t.Fatalf("size says %d entries, the map holds %d", l.size.Load(), counted)
	}
}

func TestLocal_SweepsExpiredEntries(t *testing.T) {
	verifyNoLeaks(t)
	l := newLocal(t, Options{TTL: 50 * time.Millisecond, NegativeTTL: 50 * time.Millisecond})
	defer l.Close()
	src := newSource("v")
	for i := 0; i < 50; i++ {
		mustGet(t, l, fmt.Sprintf("k%d", i), src.load)
	}
	// The sweeper runs at most once a second.
	deadline := time.Now().Add(3 * time.Second)
	for l.size.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d expired entries still held after 3s", l.size.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLocal_Close(t *testing.T) {
	verifyNoLeaks(t)
	l := newLocal(t, Options{})
	l.Close()
	l.Close() // a second Close is harmless
	if got := mustGet(t, l, "k", newSource("v").load); got != "v" {
		t.Fatalf("Get after Close = %q", got)
	}
}

func TestNewLocal_BadOptions(t *testing.T) {
	if l, err := NewLocal(Options{TTL: -time.Second}); err == nil {
		l.Close()
		t.Error("NewLocal accepted a negative TTL")
	}
}

// A collector of another shape under one of the cache's metric names is
// NewLocal's error, not a panic.
func TestNewLocal_MetricConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiperf_cache_requests_total", Help: "another"}))
	l, err := NewLocal(Options{Registerer: reg})
	if err == nil {
		l.Close()
		t.Fatal("NewLocal accepted a conflicting apiperf_cache_requests_total")
	}
	if !strings.Contains(err.Error(), "cache metrics") {
		t.Errorf("the error %q does not say it is the cache's metrics", err)
	}
}

// TestCache_HitAllocations holds the hit paths to their allocation budget:
// none for Local, the Redis key string alone for a client-side hit.
func TestCache_HitAllocations(t *testing.T) {
	verifyNoLeaks(t)
	for _, tc := range []struct {
		im     impl
		budget float64
	}{
		{impls[0], 1},  // Redis: the key concatenation
		{impls[1], -1}, // RedisNoClientCache: a round trip; only reported
		{impls[2], 0},  // Local
	} {
		t.Run(tc.im.name, func(t *testing.T) {
			cs, _ := tc.im.open(t, 1, Options{})
			src := newSource(`{"id":1,"name":"hot"}`)
			for i := 0; i < 3; i++ {
				mustGet(t, cs[0], "product:1", src.load)
			}
			ctx, c, load := context.Background(), cs[0], apiperf.LoadFunc(src.load)
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := c.Get(ctx, "product:1", load); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%s: %.1f allocations per hit", tc.im.name, allocs)
			if tc.budget >= 0 && allocs > tc.budget {
				t.Errorf("%.1f allocations per hit, budget %.0f", allocs, tc.budget)
			}
			if src.loads.Load() != 1 {
				t.Errorf("the hits reloaded the value")
			}
		})
	}
}

// TestLocal_PanickingLoaderReleasesItsLease: the protocol releases the lease
// of a load that panicked, as it does in Redis, so nothing is left behind.
func TestLocal_PanickingLoaderReleasesItsLease(t *testing.T) {
	verifyNoLeaks(t)
	l := newLocal(t, Options{})
	defer l.Close()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the loader's panic did not reach the caller")
			}
		}()
		l.Get(context.Background(), "k", func(context.Context, string) ([]byte, error) { panic("loader bug") })
	}()
	if n := l.size.Load(); n != 0 {
		t.Fatalf("%d entries after a panicked load, want none", n)
	}
	if got := mustGet(t, l, "k", newSource("v").load); got != "v" {
		t.Fatalf("Get after the panic = %q", got)
	}
}
