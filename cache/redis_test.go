package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// TestRedis_ThreeReplicas follows one key through three replicas: A loads,
// B and C hit, and after a write A's Invalidate reaches B's and C's
// client-side copies. It measures how long B serves the old value after
// Invalidate returns.
func TestRedis_ThreeReplicas(t *testing.T) {
	verifyNoLeaks(t)
	rs := MustOpenReplicas(t, 3, true, Options{})
	a, b, c := rs.caches[0], rs.caches[1], rs.caches[2]
	ctx := context.Background()
	src := newSource("v0")

	if got := mustGet(t, a, "product:1", src.load); got != "v0" {
		t.Fatalf("A: %q", got)
	}
	for _, r := range []*Redis{b, c} {
		mustGet(t, r, "product:1", src.load)
		mustGet(t, r, "product:1", src.load)
	}
	if n := src.loads.Load(); n != 1 {
		t.Fatalf("load called %d times; B and C should have hit", n)
	}
	for i, reg := range rs.regs[1:] {
		if h := counter(t, reg, "apiperf_cache_requests_total", resultClientHit); h != 1 {
			t.Fatalf("replica %d: %v client-side hits, want 1 (the second Get)", i+1, h)
		}
	}

	const rounds = 200
	delays := make([]time.Duration, 0, rounds)
	for i := 1; i <= rounds; i++ {
		want := fmt.Sprintf("v%d", i)
		src.set(want)
		if err := a.Invalidate(ctx, "product:1"); err != nil {
			t.Fatal(err)
		}
		done := time.Now()
		deadline := done.Add(2 * time.Second)
		for mustGet(t, b, "product:1", src.load) != want {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: B still serves the old value 2s after Invalidate", i)
			}
		}
		delays = append(delays, time.Since(done))
		for mustGet(t, c, "product:1", src.load) != want {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: C still serves the old value 2s after Invalidate", i)
			}
		}
		// Back to the steady state: every replica holds a client-side copy.
		for _, r := range rs.caches {
			mustGet(t, r, "product:1", src.load)
			mustGet(t, r, "product:1", src.load)
		}
	}
	slices.Sort(delays)
	p := func(q float64) time.Duration { return delays[int(q*float64(len(delays)-1))] }
	t.Logf("Invalidate on A returned -> B returns the new value, %d rounds: p50 %v, p99 %v, max %v",
		rounds, p(0.50), p(0.99), delays[len(delays)-1])
	if n := src.loads.Load(); n > 1+rounds {
		t.Errorf("load called %d times over %d writes; want one per write", n, rounds)
	}
}

// TestRedis_KeyLayout pins what lands in Redis: the key in a hash tag after
// the prefix, a kind byte before the value, and the TTLs.
func TestRedis_KeyLayout(t *testing.T) {
	verifyNoLeaks(t)
	rs := MustOpenReplicas(t, 1, true, Options{TTL: 30 * time.Second, NegativeTTL: 2 * time.Second})
	r, c := rs.caches[0], rs.clients[0]
	ctx := context.Background()
	mustGet(t, r, "product:42", newSource(`{"id":42}`).load)
	r.Get(ctx, "product:43", func(context.Context, string) ([]byte, error) {
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "no product 43")
	})

	for _, tc := range []struct {
		key, want string
		ttl       time.Duration
	}{
		{"product:42", `v{"id":42}`, 30 * time.Second},
		{"product:43", "nno product 43", 2 * time.Second},
	} {
		rkey := r.opts.Prefix + "{" + tc.key + "}"
		got, err := c.Do(ctx, c.B().Get().Key(rkey).Build()).ToString()
		if err != nil || got != tc.want {
			t.Errorf("GET %s = %q, %v; want %q", rkey, got, err, tc.want)
		}
		pttl, err := c.Do(ctx, c.B().Pttl().Key(rkey).Build()).AsInt64()
		if err != nil || pttl <= 0 || time.Duration(pttl)*time.Millisecond > tc.ttl {
			t.Errorf("PTTL %s = %d, %v; want in (0, %v]", rkey, pttl, err, tc.ttl)
		}
	}
}

// TestRedis_Lease covers leases left behind by replicas that crashed or are
// slow.
func TestRedis_Lease(t *testing.T) {
	verifyNoLeaks(t)
	ctx := context.Background()

	t.Run("ExpiredLeaseOfACrashedReplica", func(t *testing.T) {
		rs := MustOpenReplicas(t, 1, true, Options{LeaseTTL: 3 * time.Second})
		r, c := rs.caches[0], rs.clients[0]
		rkey := r.opts.Prefix + "{k}"
		if err := c.Do(ctx, c.B().Set().Key(rkey).Value("lgone:1").Px(300*time.Millisecond).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		src := newSource("v")
		start := time.Now()
		if got := mustGet(t, r, "k", src.load); got != "v" {
			t.Fatalf("Get = %q", got)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("Get took %v; want it to wait for the lease to expire (300ms), no longer", d)
		}
		if got, _ := c.Do(ctx, c.B().Get().Key(rkey).Build()).ToString(); got != "vv" {
			t.Errorf("after the wait Redis holds %q, want the stored value", got)
		}
	})

	t.Run("PanickingLoaderReleasesItsLease", func(t *testing.T) {
		rs := MustOpenReplicas(t, 2, true, Options{LeaseTTL: 3 * time.Second})
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the loader's panic did not reach the caller")
				}
			}()
			rs.caches[0].Get(ctx, "k", func(context.Context, string) ([]byte, error) { panic("loader bug") })
		}()
		start := time.Now()
		if got := mustGet(t, rs.caches[1], "k", newSource("v").load); got != "v" {
			t.Fatalf("Get = %q", got)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the other replica waited %v for a lease whose loader had panicked", d)
		}
	})

	t.Run("LoadSlowerThanLeaseTTL", func(t *testing.T) {
		rs := MustOpenReplicas(t, 1, true, Options{LeaseTTL: 200 * time.Millisecond})
		r, c := rs.caches[0], rs.clients[0]
		rkey := r.opts.Prefix + "{k}"
		if err := c.Do(ctx, c.B().Set().Key(rkey).Value("lslow:1").Px(10*time.Second).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		// The loader that runs after the wait still gets its full LeaseTTL.
		load := func(ctx context.Context, _ string) ([]byte, error) {
			if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 150*time.Millisecond {
				return nil, errors.New("the loader got a context that is about to expire")
			}
			return []byte("v"), nil
		}
		start := time.Now()
		if got := mustGet(t, r, "k", load); got != "v" {
			t.Fatalf("Get = %q", got)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
			t.Errorf("Get took %v; want about LeaseTTL (200ms)", d)
		}
		if n := counter(t, rs.regs[0], "apiperf_cache_fallbacks_total", reasonLeaseWait); n != 1 {
			t.Errorf("fallbacks{lease_wait} = %v, want 1", n)
		}
		if got, _ := c.Do(ctx, c.B().Get().Key(rkey).Build()).ToString(); got != "lslow:1" {
			t.Errorf("the other replica's lease became %q; it must be left alone", got)
		}
	})
}

// TestRedis_RedisDown kills a Redis of its own mid-test, then starts it again
// on the same port, and freezes it (SIGSTOP) to play a Redis that stops
// answering.
func TestRedis_RedisDown(t *testing.T) {
	verifyNoLeaks(t)
	srv := testenv.StartRedis(t)
	client := MustNewClient(t, srv.Addr(), true)
	defer client.Close()
	logger, logs := captureLogger()
	reg := prometheus.NewRegistry()
	r, err := NewRedis(client, Options{
		// 200ms: short enough to test, long enough that a busy machine
		// does not time out a healthy Redis and log an extra outage.
		Prefix: testPrefix(t), Timeout: 200 * time.Millisecond, RetryInterval: 100 * time.Millisecond,
		Logger: logger, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	src := newSource("v1")
	clientHits := func() float64 { return counter(t, reg, "apiperf_cache_requests_total", resultClientHit) }

	// The first Get cached the key's absence client-side; the push that
	// drops it races the next Get, so allow a few.
	for i := 0; clientHits() == 0; i++ {
		if i == 5 {
			t.Fatalf("no client-side hit before the outage")
		}
		mustGet(t, r, "k", src.load)
	}

	t.Run("Killed", func(t *testing.T) {
		srv.Kill()
		loadsBefore, hitsBefore := src.loads.Load(), clientHits()
		for i := 0; i < 20; i++ {
			start := time.Now()
			if got := mustGet(t, r, "k", src.load); got != "v1" {
				t.Fatalf("Get during the outage = %q", got)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Fatalf("Get during the outage took %v", d)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if src.loads.Load() == loadsBefore {
			t.Fatal("Gets during the outage did not call the loader")
		}
		err := r.Invalidate(ctx, "k")
		if apiperf.ErrorCode(err) != apiperf.EUNAVAILABLE {
			t.Errorf("Invalidate during the outage = %v, want EUNAVAILABLE", err)
		}
		if n := counter(t, reg, "apiperf_cache_invalidate_errors_total", ""); n != 1 {
			t.Errorf("invalidate errors = %v, want 1", n)
		}
		fb := counter(t, reg, "apiperf_cache_fallbacks_total", reasonCircuitOpen) +
			counter(t, reg, "apiperf_cache_fallbacks_total", reasonRedisError) +
			counter(t, reg, "apiperf_cache_fallbacks_total", reasonTimeout)
		// The first Get may still be served from memory: rueidis notices
		// the closed connection (and drops its client-side cache) a moment
		// after the kill. Every other Get is a fallback.
		hits := clientHits() - hitsBefore
		if hits > 2 || fb != 20-hits {
			t.Errorf("%v fallbacks and %v client-side hits, want %v fallbacks and at most 2 hits", fb, hits, 20-hits)
		}
	})

	t.Run("Restarted", func(t *testing.T) {
		srv.Start()
		hitsBefore := clientHits()
		deadline := time.Now().Add(5 * time.Second)
		for clientHits() < hitsBefore+3 {
			if time.Now().After(deadline) {
				t.Fatalf("no client-side hits 5s after Redis came back; logs:\n%s", logs)
			}
			if got := mustGet(t, r, "k", src.load); got != "v1" {
				t.Fatalf("Get after the restart = %q", got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("Frozen", func(t *testing.T) {
		if err := srv.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		src.set("v2") // a read that reaches the loader shows it
		for i := 0; i < 10; i++ {
			start := time.Now()
			b, err := r.Get(ctx, "frozen", src.load)
			if err != nil || string(b) != "v2" {
				t.Fatalf("Get while Redis is frozen = %q, %v", b, err)
			}
			// Options.Timeout is 200ms; the shared deadline may add a quarter.
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Get while Redis is frozen took %v", d)
			}
		}
		if n := counter(t, reg, "apiperf_cache_fallbacks_total", reasonTimeout); n < 1 {
			t.Errorf("fallbacks{timeout} = %v, want at least 1", n)
		}
		if err := srv.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for hits := clientHits(); clientHits() < hits+3; {
			if time.Now().After(deadline) {
				t.Fatalf("no client-side hits 5s after Redis thawed; logs:\n%s", logs)
			}
			mustGet(t, r, "frozen", src.load)
			time.Sleep(10 * time.Millisecond)
		}
	})

	// Each state change is logged once, not once per failing call.
	out := logs.String()
	if down, back := strings.Count(out, "Redis unavailable"), strings.Count(out, "Redis reachable again"); down != 2 || back != 2 {
		t.Errorf("logged %d outages and %d recoveries, want 2 and 2:\n%s", down, back, out)
	}
}

// TestRedis_InvalidateRetriedAfterOutage cuts one replica off Redis while
// the others still use it: the write's Invalidate fails there, and the key
// must be deleted when Redis is back, not served stale until its TTL.
func TestRedis_InvalidateRetriedAfterOutage(t *testing.T) {
	verifyNoLeaks(t)
	proxy := testenv.NewProxy(t, testRedisAddr)
	prefix := testPrefix(t)
	b := MustOpenReplicas(t, 1, true, Options{Prefix: prefix}).caches[0]
	ca := MustNewClient(t, proxy.Addr(), true)
	defer ca.Close()
	logger, logs := captureLogger()
	a, err := NewRedis(ca, Options{Prefix: prefix, Timeout: 500 * time.Millisecond,
		RetryInterval: 50 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	src := newSource("v1")
	mustGet(t, a, "k", src.load)
	mustGet(t, b, "k", src.load)
	mustGet(t, b, "k", src.load)

	proxy.Down()
	src.set("v2")
	if err := a.Invalidate(ctx, "k"); apiperf.ErrorCode(err) != apiperf.EUNAVAILABLE {
		t.Fatalf("Invalidate through a cut connection = %v, want EUNAVAILABLE", err)
	}
	if got := mustGet(t, b, "k", src.load); got != "v1" {
		t.Fatalf("B = %q; the invalidation cannot have reached Redis", got)
	}
	if got := mustGet(t, a, "k", src.load); got != "v2" {
		t.Fatalf("A during its outage = %q, want the loader's v2", got)
	}

	proxy.Up()
	deadline := time.Now().Add(3 * time.Second)
	for mustGet(t, b, "k", src.load) != "v2" {
		if time.Now().After(deadline) {
			t.Fatalf("B still serves v1 3s after A's Redis came back; logs:\n%s", logs)
		}
		mustGet(t, a, "other", src.load) // A's Gets probe Redis and find it back
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "retried the invalidations") {
		t.Errorf("the retry was not logged:\n%s", logs)
	}
}

func TestNewClient(t *testing.T) {
	verifyNoLeaks(t)

	t.Run("RejectsBadURLWithoutLeakingThePassword", func(t *testing.T) {
		for _, u := range []string{"redis://user:s3cret@[::1", "http://user:s3cret@localhost:6379", "::"} {
			c, err := NewClient(u, true, quietLogger())
			if err == nil {
				c.Close()
				t.Errorf("NewClient(%q) succeeded", u)
				continue
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("NewClient(%q) error shows the password: %v", u, err)
			}
			// The package takes a URL, not an environment: naming the
			// variable is its caller's business.
			if strings.Contains(err.Error(), "REDIS_") {
				t.Errorf("NewClient(%q) error names an environment variable: %v", u, err)
			}
		}
	})

	t.Run("TrackingRefused", func(t *testing.T) {
		// A Redis whose ACL forbids CLIENT TRACKING, as some managed ones do.
		srv := testenv.StartRedis(t, "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-client|tracking")
		logger, logs := captureLogger()
		c, err := NewClient("redis://"+srv.Addr(), true, logger)
		if err != nil {
			t.Fatalf("NewClient did not fall back to plain round trips: %v", err)
		}
		defer c.Close()
		if !strings.Contains(logs.String(), "refused client-side caching") {
			t.Errorf("the fallback was not explained in the log:\n%s", logs)
		}
		if strings.Contains(logs.String(), "REDIS_") {
			t.Errorf("the log names an environment variable:\n%s", logs)
		}
		if ClientSideCaching(c) {
			t.Error("ClientSideCaching reports true for a client Redis refused tracking")
		}
		reg := prometheus.NewRegistry()
		r, err := NewRedis(c, Options{Prefix: testPrefix(t), Registerer: reg, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		src := newSource("v")
		for i := 0; i < 3; i++ {
			mustGet(t, r, "k", src.load)
		}
		if src.loads.Load() != 1 || counter(t, reg, "apiperf_cache_requests_total", resultRedisHit) != 2 {
			t.Errorf("want 1 load and 2 Redis hits without client-side caching")
		}
	})

	t.Run("ClientCacheOff", func(t *testing.T) {
		c := MustNewClient(t, testRedisAddr, false)
		defer c.Close()
		if ClientSideCaching(c) {
			t.Error("ClientSideCaching reports true for a client made with clientCache=false")
		}
		if on := MustNewClient(t, testRedisAddr, true); !ClientSideCaching(on) {
			t.Error("ClientSideCaching reports false for a client with client-side caching")
		} else {
			on.Close()
		}
		r, err := NewRedis(c, Options{Prefix: testPrefix(t), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer deleteByPrefix(t, c, r.opts.Prefix)
		src := newSource("v")
		mustGet(t, r, "k", src.load)
		for i := 0; i < 2; i++ { // the second read would be the client-side hit
			if c.DoCache(context.Background(), c.B().Get().Key(r.redisKey("k")).Cache(), time.Minute).IsCacheHit() {
				t.Error("a client built with clientCache=false served from process memory")
			}
		}
	})
}

func TestNewRedis_RejectsBadOptions(t *testing.T) {
	c := MustNewClient(t, testRedisAddr, true)
	defer c.Close()
	for _, o := range []Options{{TTL: -time.Second}, {Timeout: -1}, {LeaseTTL: -1}} {
		if _, err := NewRedis(c, o); err == nil {
			t.Errorf("NewRedis(%+v) accepted it", o)
		}
	}
	if _, err := NewRedis(nil, Options{}); err == nil {
		t.Error("NewRedis(nil) accepted it")
	}
}

// TestNewRedis_SharesARegistry builds several caches on one registry, as a
// process with a Redis cache and a Local fallback would: the second
// registration reuses the first's counters instead of failing.
func TestNewRedis_SharesARegistry(t *testing.T) {
	verifyNoLeaks(t)
	c := MustNewClient(t, testRedisAddr, true)
	defer c.Close()
	reg := prometheus.NewRegistry()
	prefix := testPrefix(t)
	defer deleteByPrefix(t, c, prefix)
	var caches []Cache
	for i := 0; i < 2; i++ {
		r, err := NewRedis(c, Options{Prefix: prefix, Registerer: reg, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("cache %d: %v", i, err)
		}
		defer r.Close()
		caches = append(caches, r)
	}
	l := newLocal(t, Options{Registerer: reg})
	defer l.Close()
	caches = append(caches, l)
	src := newSource("v")
	for _, cc := range caches {
		mustGet(t, cc, "k", src.load)
	}
	total := 0.0
	for _, result := range []string{resultClientHit, resultRedisHit, resultMiss, resultNegativeHit} {
		total += counter(t, reg, "apiperf_cache_requests_total", result)
	}
	if total != 3 {
		t.Errorf("the shared registry counted %v Gets, want 3", total)
	}
}
