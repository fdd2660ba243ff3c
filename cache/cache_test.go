package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/prometheus/client_golang/prometheus"
)

// The tests in this file are the behaviour every Cache promises; they run
// against Redis with and without client-side caching and against Local.

// impl opens instances of one Cache implementation. Redis instances share
// state as replicas do (one Redis, one client each); Local shares nothing,
// so it always opens one.
type impl struct {
	name        string
	clientCache bool // hits are served from process memory
	open        func(t *testing.T, n int, opts Options) ([]Cache, []*prometheus.Registry)
}

var impls = []impl{
	{name: "Redis", clientCache: true, open: openRedis(true)},
	{name: "RedisNoClientCache", clientCache: false, open: openRedis(false)},
	{name: "Local", clientCache: true, open: openLocal},
}

func openRedis(clientCache bool) func(*testing.T, int, Options) ([]Cache, []*prometheus.Registry) {
	return func(t *testing.T, n int, opts Options) ([]Cache, []*prometheus.Registry) {
		rs := MustOpenReplicas(t, n, clientCache, opts)
		cs := make([]Cache, len(rs.caches))
		for i, r := range rs.caches {
			cs[i] = r
		}
		return cs, rs.regs
	}
}

func openLocal(t *testing.T, _ int, opts Options) ([]Cache, []*prometheus.Registry) {
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	l := newLocal(t, opts)
	t.Cleanup(l.Close)
	return []Cache{l}, []*prometheus.Registry{reg}
}

// source plays the database: a value that writes change and a loader that
// reads it, counting its calls.
type source struct {
	val   atomic.Pointer[string]
	loads atomic.Int32
	delay time.Duration
	err   atomic.Pointer[error]
}

func newSource(v string) *source {
	s := &source{}
	s.set(v)
	return s
}

func (s *source) set(v string) { s.val.Store(&v) }

func (s *source) fail(err error) {
	if err == nil {
		s.err.Store(nil)
		return
	}
	s.err.Store(&err)
}

func (s *source) load(context.Context, string) ([]byte, error) {
	s.loads.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if e := s.err.Load(); e != nil {
		return nil, *e
	}
	return []byte(*s.val.Load()), nil
}

// mustGet returns the value of key from c, failing the test on an error.
func mustGet(tb testing.TB, c Cache, key string, load apiperf.LoadFunc) string {
	tb.Helper()
	b, err := c.Get(context.Background(), key, load)
	if err != nil {
		tb.Fatalf("Get(%q): %v", key, err)
	}
	return string(b)
}

// sum adds one counter over every instance's registry.
func sum(tb testing.TB, regs []*prometheus.Registry, name, label string) float64 {
	var n float64
	for _, reg := range regs {
		n += counter(tb, reg, name, label)
	}
	return n
}

func TestCache_Get(t *testing.T) {
	verifyNoLeaks(t)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			t.Run("LoadsOnceThenHits", func(t *testing.T) {
				cs, regs := im.open(t, 3, Options{})
				src := newSource(`{"id":42}`)
				for round := 0; round < 3; round++ {
					for _, c := range cs {
						if got := mustGet(t, c, "product:42", src.load); got != `{"id":42}` {
							t.Fatalf("Get = %q, want the loaded value", got)
						}
					}
				}
				if n := src.loads.Load(); n != 1 {
					t.Fatalf("load called %d times, want 1", n)
				}
				clientHits := sum(t, regs, "apiperf_cache_requests_total", resultClientHit)
				redisHits := sum(t, regs, "apiperf_cache_requests_total", resultRedisHit)
				// A replica may count a second miss: its first Get cached the
				// key's absence client-side, and the push that drops it can
				// arrive just after the store. The value comes from Redis
				// then, without a load.
				misses := sum(t, regs, "apiperf_cache_requests_total", resultMiss)
				if total := clientHits + redisHits + misses; misses < 1 || total != float64(3*len(cs)) {
					t.Errorf("hits %v + %v, misses %v: want %d Gets with at least 1 miss", clientHits, redisHits, misses, 3*len(cs))
				}
				if im.clientCache {
					// Every instance's first Get after the load reaches Redis
					// (the loader's own instance too: the store invalidated
					// nothing it had); the repeats come from memory.
					if clientHits < float64(len(cs)) {
						t.Errorf("client hits = %v, want at least %d", clientHits, len(cs))
					}
				} else if clientHits != 0 || redisHits != float64(3*len(cs)-1) {
					t.Errorf("client hits = %v, redis hits = %v; want 0 and %d", clientHits, redisHits, 3*len(cs)-1)
				}
				if loads := sum(t, regs, "apiperf_cache_loads_total", outcomeOK); loads != 1 {
					t.Errorf("loads_total{ok} = %v, want 1", loads)
				}
			})

			t.Run("ExpiresAfterTTL", func(t *testing.T) {
				cs, _ := im.open(t, 1, Options{TTL: 300 * time.Millisecond})
				src := newSource("v1")
				mustGet(t, cs[0], "k", src.load)
				mustGet(t, cs[0], "k", src.load)
				if n := src.loads.Load(); n != 1 {
					t.Fatalf("load called %d times within the TTL, want 1", n)
				}
				src.set("v2")
				time.Sleep(450 * time.Millisecond)
				if got := mustGet(t, cs[0], "k", src.load); got != "v2" {
					t.Fatalf("Get after the TTL = %q, want v2", got)
				}
			})

			t.Run("LoadErrorIsNotCached", func(t *testing.T) {
				cs, regs := im.open(t, 2, Options{LeaseTTL: 3 * time.Second})
				src := newSource("v1")
				errDown := errors.New("database down")
				src.fail(errDown)
				for _, c := range cs {
					start := time.Now()
					if _, err := c.Get(context.Background(), "k", src.load); !errors.Is(err, errDown) {
						t.Fatalf("Get = %v, want the loader's error", err)
					}
					// The failed load released its lease: nobody waits for it.
					if d := time.Since(start); d > time.Second {
						t.Fatalf("Get after a failed load took %v", d)
					}
				}
				if n := src.loads.Load(); n != int32(len(cs)) {
					t.Fatalf("load called %d times, want %d (errors are not cached)", n, len(cs))
				}
				if e := sum(t, regs, "apiperf_cache_loads_total", outcomeError); e != float64(len(cs)) {
					t.Errorf("loads_total{error} = %v, want %d", e, len(cs))
				}
				src.fail(nil)
				if got := mustGet(t, cs[0], "k", src.load); got != "v1" {
					t.Fatalf("Get after recovery = %q", got)
				}
			})

			t.Run("KeepsBinaryValuesExact", func(t *testing.T) {
				cs, _ := im.open(t, 2, Options{})
				want := make([]byte, 64<<10)
				for i := range want {
					want[i] = byte(i * 7)
				}
				load := func(context.Context, string) ([]byte, error) { return bytes.Clone(want), nil }
				for _, c := range cs {
					for i := 0; i < 2; i++ {
						got, err := c.Get(context.Background(), "bin", load)
						if err != nil || !bytes.Equal(got, want) {
							t.Fatalf("Get = %d bytes, %v; want the 64 KiB value back exactly", len(got), err)
						}
					}
				}
			})
		})
	}
}

func TestCache_NegativeCaching(t *testing.T) {
	verifyNoLeaks(t)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			t.Run("RemembersAbsence", func(t *testing.T) {
				cs, regs := im.open(t, 3, Options{NegativeTTL: 500 * time.Millisecond})
				var loads atomic.Int32
				load := func(context.Context, string) ([]byte, error) {
					loads.Add(1)
					return nil, apiperf.Errorf(apiperf.ENOTFOUND, "product 7 not found")
				}
				check := func(c Cache) {
					t.Helper()
					_, err := c.Get(context.Background(), "product:7", load)
					if apiperf.ErrorCode(err) != apiperf.ENOTFOUND || apiperf.ErrorMessage(err) != "product 7 not found" {
						t.Fatalf("Get = %v, want ENOTFOUND with the loader's message", err)
					}
				}
				for i := 0; i < 6; i++ {
					check(cs[i%len(cs)])
				}
				if n := loads.Load(); n != 1 {
					t.Fatalf("load called %d times within NegativeTTL, want 1", n)
				}
				if h := sum(t, regs, "apiperf_cache_requests_total", resultNegativeHit); h != 5 {
					t.Errorf("negative hits = %v, want 5", h)
				}
				if n := sum(t, regs, "apiperf_cache_loads_total", outcomeNotFound); n != 1 {
					t.Errorf("loads_total{not_found} = %v, want 1", n)
				}

				if err := cs[0].Invalidate(context.Background(), "product:7"); err != nil {
					t.Fatal(err)
				}
				check(cs[len(cs)-1])
				check(cs[0])
				if n := loads.Load(); n != 2 {
					t.Fatalf("load called %d times after Invalidate, want 2", n)
				}

				time.Sleep(700 * time.Millisecond)
				check(cs[0])
				if n := loads.Load(); n != 3 {
					t.Fatalf("load called %d times after NegativeTTL, want 3", n)
				}
			})

			t.Run("Disabled", func(t *testing.T) {
				cs, _ := im.open(t, 1, Options{NegativeTTL: -1})
				var loads atomic.Int32
				load := func(context.Context, string) ([]byte, error) {
					loads.Add(1)
					return nil, apiperf.Errorf(apiperf.ENOTFOUND, "gone")
				}
				for i := 0; i < 3; i++ {
					if _, err := cs[0].Get(context.Background(), "k", load); apiperf.ErrorCode(err) != apiperf.ENOTFOUND {
						t.Fatalf("Get = %v", err)
					}
				}
				if n := loads.Load(); n != 3 {
					t.Fatalf("load called %d times, want 3 with negative caching off", n)
				}
			})
		})
	}
}

func TestCache_Invalidate(t *testing.T) {
	verifyNoLeaks(t)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			t.Run("ReadYourWrites", func(t *testing.T) {
				// The replica that wrote must never serve its old copy after
				// Invalidate returns, not even for a moment.
				cs, _ := im.open(t, 1, Options{})
				src := newSource("v0")
				ctx := context.Background()
				for i := 1; i <= 1000; i++ {
					mustGet(t, cs[0], "k", src.load)
					mustGet(t, cs[0], "k", src.load) // a client-side copy now
					want := fmt.Sprintf("v%d", i)
					src.set(want)
					if err := cs[0].Invalidate(ctx, "k"); err != nil {
						t.Fatal(err)
					}
					if got := mustGet(t, cs[0], "k", src.load); got != want {
						t.Fatalf("round %d: Get right after Invalidate = %q, want %q", i, got, want)
					}
				}
			})

			t.Run("ManyKeys", func(t *testing.T) {
				cs, _ := im.open(t, 1, Options{})
				srcs := map[string]*source{"a": newSource("a1"), "b": newSource("b1"), "c": newSource("c1")}
				for k, src := range srcs {
					mustGet(t, cs[0], k, src.load)
					mustGet(t, cs[0], k, src.load)
					src.set(k + "2")
				}
				if err := cs[0].Invalidate(context.Background(), "a", "b", "c"); err != nil {
					t.Fatal(err)
				}
				for k, src := range srcs {
					if got := mustGet(t, cs[0], k, src.load); got != k+"2" {
						t.Errorf("Get(%q) after Invalidate = %q, want %q", k, got, k+"2")
					}
				}
			})

			t.Run("NoKeys", func(t *testing.T) {
				cs, _ := im.open(t, 1, Options{})
				if err := cs[0].Invalidate(context.Background()); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestCache_Stampede(t *testing.T) {
	verifyNoLeaks(t)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			cs, _ := im.open(t, 3, Options{})
			src := newSource("hot")
			src.delay = 5 * time.Millisecond
			const callers = 1000
			start := make(chan struct{})
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for i := 0; i < callers; i++ {
				wg.Add(1)
				go func(c Cache) {
					defer wg.Done()
					<-start
					b, err := c.Get(context.Background(), "cold", src.load)
					if err == nil && string(b) != "hot" {
						err = fmt.Errorf("got %q", b)
					}
					if err != nil {
						errs <- err
					}
				}(cs[i%len(cs)])
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			n := src.loads.Load()
			t.Logf("%d concurrent Gets over %d instance(s): load called %d time(s)", callers, len(cs), n)
			if n > int32(len(cs)) {
				t.Fatalf("load called %d times, want at most %d (one per process)", n, len(cs))
			}
		})
	}
}

// TestCache_InvalidateDuringLoad interleaves on purpose: a load reads the
// old value, a write and its Invalidate happen, then the load finishes. The
// old value must not be stored: the next Get has to see the new one.
func TestCache_InvalidateDuringLoad(t *testing.T) {
	verifyNoLeaks(t)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			cs, regs := im.open(t, 2, Options{})
			invalidators := []int{0}
			if len(cs) > 1 {
				invalidators = append(invalidators, 1)
			}
			for _, invalidator := range invalidators {
				name := "SameInstance"
				if invalidator != 0 {
					name = "OtherReplica"
				}
				t.Run(name, func(t *testing.T) {
					key := "race:" + name
					var db atomic.Pointer[string]
					old, fresh := "old", "new"
					db.Store(&old)
					started, release := make(chan struct{}), make(chan struct{})
					var calls atomic.Int32
					load := func(context.Context, string) ([]byte, error) {
						v := *db.Load() // the read happens before the write...
						if calls.Add(1) == 1 {
							close(started)
							<-release // ...and the load finishes after it
						}
						return []byte(v), nil
					}
					type result struct {
						b   []byte
						err error
					}
					first := make(chan result, 1)
					go func() {
						b, err := cs[0].Get(context.Background(), key, load)
						first <- result{b, err}
					}()

					<-started                                                    // load-start
					db.Store(&fresh)                                             // the write commits
					err := cs[invalidator].Invalidate(context.Background(), key) // and invalidates
					if err != nil {
						t.Fatal(err)
					}
					close(release) // load-finish, with the old value
					r := <-first
					if r.err != nil {
						t.Fatal(r.err)
					}
					// The Get that raced sees the new value too: its load lost
					// the lease, so it read again.
					if string(r.b) != fresh {
						t.Errorf("the racing Get returned %q, want %q", r.b, fresh)
					}
					for i, c := range cs {
						if got := mustGet(t, c, key, load); got != fresh {
							t.Fatalf("instance %d: Get after the write = %q, want %q", i, got, fresh)
						}
					}
					if n := calls.Load(); n != 2 {
						t.Errorf("load called %d times, want 2 (the stale load and one reload)", n)
					}
				})
			}
			if d := sum(t, regs, "apiperf_cache_loads_total", outcomeDiscarded); d != float64(len(invalidators)) {
				t.Errorf("loads_total{discarded} = %v, want %d", d, len(invalidators))
			}
		})
	}
}
