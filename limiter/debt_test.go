package limiter

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/redis/rueidis"
)

// TestRedis_Debt checks requests allowed on debt on the machine's Redis.
func TestRedis_Debt(t *testing.T) {
	verifyNoLeaks(t)
	debt(t, redisAddr)
}

// debt runs the checks of allowing on debt on the Redis at addrs.
func debt(t *testing.T, addrs ...string) {
	ctx := context.Background()

	// A crowd of clients, each far below its limit and too slow to spend a
	// batch before it expires: after its first request, which Redis
	// decides, no request waits for Redis.
	t.Run("FarFromTheLimitNoRequestWaits", func(t *testing.T) {
		c := MustClient(t, addrs...)
		r := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Debt: 1})
		defer r.Close()
		p := apiperf.RatePolicy{Name: "read", Rate: 1000, Period: time.Second, Burst: 1000} // T = 1ms, batches of 100
		for round := range 3 {
			for i := range 50 {
				if res := mustAllow(t, r, "crowd"+strconv.Itoa(i), p, 1); !res.Allowed {
					t.Fatalf("round %d, client %d: refused far from the limit: %+v", round, i, res)
				}
			}
			if round == 0 && r.refills.Load() != 50 {
				t.Fatalf("%d calls waited for in the first round, want one per client (50)", r.refills.Load())
			}
			time.Sleep(150 * time.Millisecond) // every batch has expired
		}
		if n := r.refills.Load(); n != 50 {
			t.Fatalf("%d calls waited for over three rounds of 50 clients, want only the first round's 50", n)
		}
		// The background calls charged every request allowed on debt:
		// the debt was sent, none is left.
		r.Close()
		settled(t, r, "crowd", 50)
	})

	// Three replicas, a policy that does not refill within the test, and
	// each replica allowed 2 units of debt: together they allow at least the
	// burst and at most burst + 3 x 2, and Redis ends up charged for every
	// unit allowed, so the debt is paid by later refusals, not forgotten.
	t.Run("BoundAndEveryUnitCharged", func(t *testing.T) {
		c := MustClient(t, addrs...)
		prefix := MustPrefix(t, c)
		p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 10}
		var limiters []*Redis
		for range 3 {
			l := newRedis(t, MustClient(t, addrs...), RedisOptions{Prefix: prefix, Debt: 2})
			t.Cleanup(l.Close)
			limiters = append(limiters, l)
		}
		// Each replica makes its first call, so each knows the bucket.
		var allowed atomic.Int64
		for _, l := range limiters {
			if mustAllow(t, l, "hot", p, 1).Allowed {
				allowed.Add(1)
			}
		}
		var wg sync.WaitGroup
		for _, l := range limiters {
			for range 4 {
				wg.Go(func() {
					for range 10 {
						res, err := l.Allow(ctx, "hot", p, 1)
						if err != nil {
							t.Error(err)
							return
						}
						if res.Allowed {
							allowed.Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		for _, l := range limiters {
			l.Close() // waits for the background calls
		}
		n := allowed.Load()
		t.Logf("allowed %d of 123 with burst 10 and 3 x 2 of debt", n)
		if n < 10 || n > 10+3*2 {
			t.Fatalf("allowed %d, want between the burst (10) and burst + 3 replicas x 2 of debt (16)", n)
		}
		// Every allowed unit occupies an interval of the TAT (unspent
		// reservations too), so the TAT is at least n intervals ahead.
		key := prefix + "{read:hot}"
		s, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
		if err != nil {
			t.Fatalf("GET %s: %v", key, err)
		}
		tat, _ := strconv.ParseInt(s, 10, 64)
		ahead := tat - redisTimeMicros(t, c)
		if charged := ahead / p.Interval().Microseconds(); charged+1 < n {
			t.Fatalf("Redis charged %d intervals (TAT %dµs ahead) for %d units allowed", charged+1, ahead, n)
		}
	})

	// The attack the bound is about: every replica last saw the bucket
	// nearly full, the client then spends the whole burst on one of them
	// and storms the others, whose views are stale. Each may allow at
	// most Debt more before its charge comes back, so the client gets
	// burst + N*Debt at most, and Redis is charged for every unit.
	t.Run("StaleViewsOnEveryReplica", func(t *testing.T) {
		for _, d := range []int{1, 3} {
			p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 10} // nothing refills
			c := MustClient(t, addrs...)
			prefix := MustPrefix(t, c)
			var reps [3]*Redis
			for i := range reps {
				reps[i] = newRedis(t, MustClient(t, addrs...), RedisOptions{Prefix: prefix, Debt: d})
				defer reps[i].Close()
			}
			var allowed atomic.Int64
			ask := func(r *Redis) bool {
				res, err := r.Allow(ctx, "stale", p, 1)
				if err != nil {
					t.Errorf("debt %d: %v", d, err)
					return false
				}
				if res.Allowed {
					allowed.Add(1)
				}
				return res.Allowed
			}
			for _, r := range reps {
				if !ask(r) {
					t.Fatalf("debt %d: a replica's first request refused on a full bucket", d)
				}
			}
			for ask(reps[0]) {
			}
			// The others, each with a view at least half free, stormed.
			var wg sync.WaitGroup
			for _, r := range reps[1:] {
				for range 20 {
					wg.Go(func() { ask(r) })
				}
			}
			wg.Wait()
			for range 5 {
				for _, r := range reps {
					ask(r)
				}
			}
			for _, r := range reps {
				r.Close() // waits for the background charges
			}
			n := allowed.Load()
			if bound := int64(p.Burst + len(reps)*d); n > bound {
				t.Fatalf("debt %d: allowed %d, bound burst + N*Debt = %d", d, n, bound)
			}
			if n < int64(p.Burst) {
				t.Fatalf("debt %d: allowed %d, fewer than the burst %d", d, n, p.Burst)
			}
			// Redis was charged for every unit: the TAT is n intervals
			// ahead (less the few microseconds the test took).
			ahead, err := c.Do(ctx, c.B().Pttl().Key(prefix+"{read:stale}").Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			if want := (n - 1) * p.Interval().Milliseconds(); ahead < want {
				t.Fatalf("debt %d: %d allowed but the bucket is only %dms ahead (want over %dms)", d, n, ahead, want)
			}
			t.Logf("debt %d: allowed %d of a burst of %d across %d replicas", d, n, p.Burst, len(reps))
		}
	})

	// A slow policy: every request after a client's first goes on debt
	// (its one-token batch is its own), and a charge moves the TAT by an
	// interval per unit, six minutes, so nothing expires while we look.
	slow := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	// ahead is how many of slow's intervals the client's TAT is ahead.
	ahead := func(t *testing.T, c rueidis.Client, prefix, client string) float64 {
		t.Helper()
		return intervalsAhead(t, c, prefix+"{read:"+client+"}", slow)
	}

	// Debt below the cap waits for the flush: slow clients make no call
	// per request, and one flush charges all of them in a few coalesced
	// round trips (one per client on Cluster, where a batch is a pipeline).
	t.Run("DelayedChargesShareRoundTrips", func(t *testing.T) {
		c := MustClient(t, addrs...)
		prefix := MustPrefix(t, c)
		r := newRedis(t, c, RedisOptions{Prefix: prefix, Debt: 8, DebtDelay: time.Hour})
		defer r.Close()
		const clients = 50
		for i := range clients {
			mustAllow(t, r, "slow"+strconv.Itoa(i), slow, 1)
		}
		r.wg.Wait()
		before := r.calls.Load()
		for range 5 {
			for i := range clients {
				if res := mustAllow(t, r, "slow"+strconv.Itoa(i), slow, 1); !res.Allowed {
					t.Fatalf("client %d refused far from its limit: %+v", i, res)
				}
			}
		}
		if n := r.calls.Load() - before; n != 0 {
			t.Fatalf("%d script calls for 250 requests on debt below the cap, want none before the flush", n)
		}
		if n := r.debts.len(); n != clients {
			t.Fatalf("%d buckets wait for the flush, want %d", n, clients)
		}
		r.debts.flush(r)
		r.wg.Wait()
		calls := r.calls.Load() - before
		if !r.co.cluster && calls > clients/2 {
			t.Fatalf("the flush made %d round trips for %d clients: the charges were not coalesced", calls, clients)
		}
		settled(t, r, "slow", clients)
		for i := range clients {
			if a := ahead(t, c, prefix, "slow"+strconv.Itoa(i)); a < 5.9 || a > 6 {
				t.Fatalf("client %d: TAT %.2f intervals ahead after 6 units, want 6", i, a)
			}
		}
		if n := r.debts.len(); n != 0 {
			t.Fatalf("%d buckets still queued after a flush that charged them", n)
		}
		t.Logf("250 requests on debt, charged in %d round trips", calls)
	})

	// Debt that reaches the cap goes out at once: the client is busy.
	t.Run("CapSendsAtOnce", func(t *testing.T) {
		c := MustClient(t, addrs...)
		r := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Debt: 4, DebtDelay: time.Hour})
		defer r.Close()
		mustAllow(t, r, "slow0", slow, 1)
		r.wg.Wait()
		before := r.calls.Load()
		for i := range 4 {
			mustAllow(t, r, "slow0", slow, 1)
			r.wg.Wait()
			if n, want := r.calls.Load()-before, int64(i/3); n != want {
				t.Fatalf("after %d units of debt (cap 4): %d calls, want %d", i+1, n, want)
			}
		}
		settled(t, r, "slow", 1)
	})

	// A process owes at most an eighth of the burst: a burst under 8 is
	// decided by Redis every time, whatever Debt says.
	t.Run("SmallBurstTakesNoDebt", func(t *testing.T) {
		c := MustClient(t, addrs...)
		r := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Debt: 8, DebtDelay: time.Hour})
		defer r.Close()
		small := slow
		small.Burst = 7
		for range 5 {
			mustAllow(t, r, "small", small, 1)
		}
		if n := r.refills.Load(); n != 5 {
			t.Fatalf("%d of 5 requests waited for Redis with burst 7, want all: no debt under a burst of 8", n)
		}
	})

	// Close charges the debt still waiting for a flush.
	t.Run("CloseCharges", func(t *testing.T) {
		c := MustClient(t, addrs...)
		prefix := MustPrefix(t, c)
		r := newRedis(t, c, RedisOptions{Prefix: prefix, Debt: 8, DebtDelay: time.Hour})
		for range 6 {
			mustAllow(t, r, "slow0", slow, 1)
		}
		r.Close()
		if a := ahead(t, c, prefix, "slow0"); a < 5.9 {
			t.Fatalf("TAT %.2f intervals ahead after 6 units and Close, want 6", a)
		}
	})

	// With one replica the last reply is the whole truth, and debt is
	// taken only while the bucket stays at least half free: near the
	// limit every decision is Redis's, and the limit is exact.
	t.Run("OneReplicaStaysExact", func(t *testing.T) {
		c := MustClient(t, addrs...)
		r := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Debt: 5})
		defer r.Close()
		p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 4}
		n := allowedOf(t, r, "near", p, 10)
		if n != 4 {
			t.Fatalf("allowed %d with burst 4 near the limit, want exactly 4", n)
		}
	})
}

// TestRedis_BucketsExpire: a crowd of clients leaves a process with one
// entry each while it is active, and none once their reservations have
// passed and their debts are charged: memory follows the active clients,
// not every client ever seen.
func TestRedis_BucketsExpire(t *testing.T) {
	verifyNoLeaks(t)
	r, _ := MustRedis(t, RedisOptions{Debt: 1})
	p := apiperf.RatePolicy{Name: "read", Rate: 1000, Period: time.Second, Burst: 1000} // batches of 100ms
	for round := range 2 {
		for i := range 2000 {
			if res := mustAllow(t, r, "many"+strconv.Itoa(i), p, 1); !res.Allowed {
				t.Fatalf("round %d, client %d refused: %+v", round, i, res)
			}
		}
	}
	if n := r.buckets.len(); n != 2000 {
		t.Fatalf("%d entries for 2000 active clients", n)
	}
	time.Sleep(300 * time.Millisecond) // every reservation has passed
	// A sweep now keeps them all: they were active within the interval,
	// and what the process knows of them spares their next request a wait.
	now := monoNanos()
	for i := range r.buckets.shards {
		sh := &r.buckets.shards[i]
		sh.mu.Lock()
		sh.sweep(now, 0)
		sh.mu.Unlock()
	}
	if kept := r.buckets.len(); kept != 2000 {
		t.Fatalf("a sweep right after the requests forgot %d of 2000 active clients", 2000-kept)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// What the next sweep of each shard does once the clients have
		// been quiet for a sweep interval.
		now := monoNanos()
		for i := range r.buckets.shards {
			sh := &r.buckets.shards[i]
			sh.mu.Lock()
			sh.sweep(now+int64(sweepEvery), 0)
			sh.mu.Unlock()
		}
		n := r.buckets.len()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2000 idle clients still held after their reservations passed", n)
		}
		time.Sleep(50 * time.Millisecond) // a background charge may still be out
	}
}

// TestRedis_DebtChargeRetried: a charge that fails (Redis unreachable)
// leaves the debt owed and the bucket queued, and the next flush charges
// it once Redis is back; nothing allowed is forgotten.
func TestRedis_DebtChargeRetried(t *testing.T) {
	verifyNoLeaks(t)
	proxy := testenv.NewProxy(t, redisAddr)
	direct := MustClient(t, redisAddr)
	prefix := MustPrefix(t, direct)
	r := newRedis(t, MustClient(t, proxy.Addr()), RedisOptions{Prefix: prefix, Debt: 8, DebtDelay: time.Hour})
	defer r.Close()
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	for range 6 {
		mustAllow(t, r, "c", p, 1)
	}
	proxy.Down()
	r.debts.flush(r)
	r.wg.Wait()
	b := r.bucket("read", "c", false)
	b.mu.Lock()
	owed, queued := b.owed, b.queued
	b.mu.Unlock()
	if owed != 5 || !queued || r.debts.len() != 1 {
		t.Fatalf("after a failed charge: owed %d, queued %v, %d in the queue; want 5, true, 1", owed, queued, r.debts.len())
	}
	proxy.Up()
	// The client reconnects in its own time; until then a flush fails
	// again and queues the debt again, which is what is under test too.
	var owing int
	for attempt := 0; ; attempt++ {
		r.debts.flush(r)
		r.wg.Wait()
		b.mu.Lock()
		owed, owing = b.owed, b.owing
		b.mu.Unlock()
		if owed == 0 && owing == 0 {
			break
		}
		if owed != 5 || r.debts.len() != 1 || attempt == 100 {
			t.Fatalf("flush %d after Redis came back: owed %d, owing %d, %d queued", attempt+1, owed, owing, r.debts.len())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := intervalsAhead(t, direct, prefix+"{read:c}", p); a < 5.9 {
		t.Fatalf("TAT %.2f intervals ahead, want 6: the failed charge was lost", a)
	}
}

// TestRedis_DebtChargeRetriedFromAnyCall: debt can leave in a call that is
// not the flush's (the one that reaches the cap, or a request's own call
// for a batch); when that call fails, the debt must wait for the next flush
// like a failed flush charge, not sit owed until the client happens to come
// back. A client that never comes back would otherwise keep its debt
// uncharged and its entry in memory for ever (idle buckets with debt are
// never swept).
func TestRedis_DebtChargeRetriedFromAnyCall(t *testing.T) {
	verifyNoLeaks(t)
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100} // cap min(Debt, 12)
	for _, tc := range []struct {
		name string
		opts RedisOptions
		// spend takes debt and makes the call that carries it fail.
		spend func(t *testing.T, r *Redis, proxy *testenv.Proxy) (owed int)
	}{
		{"CostAtTheCap", RedisOptions{Debt: 4, DebtDelay: time.Hour}, func(t *testing.T, r *Redis, proxy *testenv.Proxy) int {
			proxy.Down()
			mustAllow(t, r, "c", p, 4) // the whole cap in one request: charged at once
			r.wg.Wait()
			return 4
		}},
		{"CapOfOne", RedisOptions{Debt: 1, DebtDelay: time.Hour}, func(t *testing.T, r *Redis, proxy *testenv.Proxy) int {
			proxy.Down()
			mustAllow(t, r, "c", p, 1) // every unit of debt is at the cap
			r.wg.Wait()
			return 1
		}},
		{"RequestsCall", RedisOptions{Debt: 4, DebtDelay: time.Hour}, func(t *testing.T, r *Redis, proxy *testenv.Proxy) int {
			for range 2 {
				mustAllow(t, r, "c", p, 1) // queued for the flush
			}
			// A request too big for the debt left makes its own call,
			// which carries the debt; the flush comes while it is out
			// and finds nothing owed.
			proxy.Down()
			var once sync.Once
			r.co.beforeFlush = func() { once.Do(func() { r.debts.flush(r) }) }
			defer func() { r.co.beforeFlush = nil }()
			if _, err := r.Allow(context.Background(), "c", p, 3); err == nil {
				t.Fatal("a request's call through a proxy that is down succeeded")
			}
			return 2
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testenv.NewProxy(t, redisAddr)
			direct := MustClient(t, redisAddr)
			tc.opts.Prefix = MustPrefix(t, direct)
			r := newRedis(t, MustClient(t, proxy.Addr()), tc.opts)
			defer r.Close()
			mustAllow(t, r, "c", p, 1) // Redis's; the bucket is known
			r.wg.Wait()
			owed := tc.spend(t, r, proxy)
			b := r.bucket("read", "c", false)
			b.mu.Lock()
			gotOwed, queued := b.owed, b.queued
			b.mu.Unlock()
			if gotOwed != owed || !queued || r.debts.len() != 1 {
				t.Fatalf("after a failed charge: owed %d, queued %v, %d in the queue; want %d, true, 1", gotOwed, queued, r.debts.len(), owed)
			}
			proxy.Up()
			for attempt := 0; ; attempt++ {
				r.debts.flush(r)
				r.wg.Wait()
				b.mu.Lock()
				gotOwed = b.owed + b.owing
				b.mu.Unlock()
				if gotOwed == 0 {
					break
				}
				if attempt == 100 {
					t.Fatalf("owed %d after %d flushes with Redis back", gotOwed, attempt+1)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if a := intervalsAhead(t, direct, tc.opts.Prefix+"{read:c}", p); a < float64(1+owed)-0.1 {
				t.Fatalf("TAT %.2f intervals ahead, want %d: the failed charge was lost", a, 1+owed)
			}
		})
	}
}

// TestRedis_DebtChargedAtOnceRetried: with debt charged at once (a negative
// DebtDelay) there is no flush to wait for, but a charge that fails must
// still be retried: the loop runs for the retries alone.
func TestRedis_DebtChargedAtOnceRetried(t *testing.T) {
	verifyNoLeaks(t)
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	proxy := testenv.NewProxy(t, redisAddr)
	direct := MustClient(t, redisAddr)
	prefix := MustPrefix(t, direct)
	r := newRedis(t, MustClient(t, proxy.Addr()), RedisOptions{Prefix: prefix, Debt: 4, DebtDelay: -1})
	defer r.Close()
	mustAllow(t, r, "c", p, 1)
	proxy.Down()
	mustAllow(t, r, "c", p, 1) // on debt, charged at once, and the charge fails
	r.wg.Wait()
	proxy.Up()
	b := r.bucket("read", "c", false)
	deadline := time.Now().Add(8 * time.Second) // a few retries, a second apart
	for {
		b.mu.Lock()
		owed := b.owed + b.owing
		b.mu.Unlock()
		if owed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("owed %d: a failed charge made at once was never retried", owed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a := intervalsAhead(t, direct, prefix+"{read:c}", p); a < 1.9 {
		t.Fatalf("TAT %.2f intervals ahead, want 2", a)
	}
}

// TestRedis_MaxClients: a flood of distinct clients leaves a process with
// at most MaxClients buckets; the clients beyond it are decided by Redis
// alone, one call each, and exactly.
func TestRedis_MaxClients(t *testing.T) {
	verifyNoLeaks(t)
	const max = 640 // ten a shard
	r, _ := MustRedis(t, RedisOptions{Debt: 8, MaxClients: max})
	p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 3}
	for i := range 3000 {
		if res := mustAllow(t, r, "flood"+strconv.Itoa(i), p, 1); !res.Allowed {
			t.Fatalf("client %d refused on its first request: %+v", i, res)
		}
	}
	if n := r.buckets.len(); n > max {
		t.Fatalf("%d buckets kept for 3000 clients, cap %d", n, max)
	}
	untracked := r.untracked.Load()
	if untracked < 3000-max {
		t.Fatalf("%d decisions without a bucket, want at least %d", untracked, 3000-max)
	}
	// An untracked client still gets exactly its burst: two more of its
	// three, then refusals.
	for i := range 3000 {
		key := "flood" + strconv.Itoa(i)
		if r.bucket("read", key, false) != nil {
			continue
		}
		n := 1 + allowedOf(t, r, key, p, 4)
		if n != 3 {
			t.Fatalf("untracked client %d: allowed %d in all with burst 3", i, n)
		}
		break
	}
	t.Logf("%d buckets kept, %d decisions by Redis alone", r.buckets.len(), r.untracked.Load())
	// Once the kept clients have been quiet for a sweep interval, a full
	// shard makes room by forgetting them.
	later := monoNanos() + int64(sweepEvery)
	for i := range r.buckets.shards {
		sh := &r.buckets.shards[i]
		sh.mu.Lock()
		ok := sh.room(r.shardCap, later, 0)
		sh.mu.Unlock()
		if !ok {
			t.Fatalf("shard %d still full of clients quiet for %v", i, sweepEvery)
		}
	}
}

// TestRedis_DebtViewNotOlderThanTheReply: the view debt is judged by is
// Redis's TAT as of the reply. A call that waited before Redis ran it (a
// queue of other calls, a slow link) read a later TIME than the moment it
// was sent; anchoring the TAT at the send time shows the bucket fuller than
// it was by that wait, and one replica alone then allows on debt a request
// that lands past the window: more than the burst, which one replica must
// never allow.
func TestRedis_DebtViewNotOlderThanTheReply(t *testing.T) {
	verifyNoLeaks(t)
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second, Burst: 16} // T = 100ms, debt cap 2
	r, c := MustRedis(t, RedisOptions{Debt: 2, DebtDelay: time.Hour})
	if err := r.Preload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The first call, the whole burst, waits 900ms before it is sent.
	var once sync.Once
	r.co.beforeFlush = func() { once.Do(func() { time.Sleep(900 * time.Millisecond) }) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := r.Allow(ctx, "c", p, p.Burst)
	if err != nil || !res.Allowed {
		t.Fatalf("the burst on a full bucket: %+v, %v", res, err)
	}
	// The bucket is empty: the next request is Redis's, and refused.
	res, err = r.Allow(ctx, "c", p, 1)
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // charges any debt taken
	ahead := float64(0)
	if s, err := c.Do(ctx, c.B().Get().Key(r.prefix+"{read:c}").Build()).ToString(); err == nil {
		tat, _ := strconv.ParseInt(s, 10, 64)
		ahead = float64(tat-redisTimeMicros(t, c)) / float64(p.Interval().Microseconds())
	}
	if res.Allowed || ahead > float64(p.Burst) {
		t.Fatalf("after the whole burst, the next request %+v; the TAT %.2f intervals ahead, past the window of %d", res, ahead, p.Burst)
	}
}

// TestRedis_FlushDoesNotDelayRequests: a flush queues a charge for every
// client with debt, thousands in a crowd, at once. A request's own call
// queued behind them would wait for all of them, far past the fallback's
// few milliseconds; it goes out in the next batch instead, ahead of the
// background calls.
func TestRedis_FlushDoesNotDelayRequests(t *testing.T) {
	verifyNoLeaks(t)
	slow := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	r, _ := MustRedis(t, RedisOptions{Debt: 8, DebtDelay: time.Hour})
	const clients = 200 // four batches of charges
	for i := range clients {
		mustAllow(t, r, "slow"+strconv.Itoa(i), slow, 1)
		mustAllow(t, r, "slow"+strconv.Itoa(i), slow, 1) // on debt, queued
	}
	r.wg.Wait()
	// One flusher, stopped before each batch until the test steps it.
	entered, step, release := stepFlusher(r)
	defer release()
	r.debts.flush(r) // 200 charges queued; the first 64 are taken and held
	<-entered
	fg := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := r.Allow(ctx, "new", slow, 1) // a new client: Redis decides
		fg <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.co.queued() < clients-r.co.max+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want the %d charges left and the request", r.co.queued(), clients-r.co.max)
		}
		time.Sleep(time.Millisecond)
	}
	step <- struct{}{} // the held batch of charges goes
	<-entered          // the second batch is taken
	step <- struct{}{}
	<-entered // the third is taken: the second has been answered
	select {
	case err := <-fg:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the request's call was not in the batch after the one held: it waits behind %d background charges", r.co.queued())
	}
	release()
	r.wg.Wait()
	for i := range clients {
		b := r.bucket("read", "slow"+strconv.Itoa(i), false)
		b.mu.Lock()
		owed := b.owed + b.owing
		b.mu.Unlock()
		if owed != 0 {
			t.Fatalf("client %d: %d still owed after the flush", i, owed)
		}
	}
}

// TestRedis_DebtDuringClose: a request that takes debt while Close runs,
// after its last flush, is charged before Close returns, not queued for a
// flush that will never come.
func TestRedis_DebtDuringClose(t *testing.T) {
	verifyNoLeaks(t)
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	r, direct, prefix := flushedByHand(t, 8)
	mustAllow(t, r, "c", p, 1)
	mustAllow(t, r, "c", p, 1) // on debt, charged by the last flush
	r.debts.stop(r)            // Close's first step: the last flush
	mustAllow(t, r, "c", p, 1) // on debt after it
	r.Close()
	if a := intervalsAhead(t, direct, prefix+"{read:c}", p); a < 2.9 {
		t.Fatalf("TAT %.2f intervals ahead after 3 units and Close, want 3: debt taken during Close was not charged", a)
	}
}

// TestRedis_TinyDebtDelay: a DebtDelay of a nanosecond does not run the
// flush loop without pause; it flushes at most once a millisecond.
func TestRedis_TinyDebtDelay(t *testing.T) {
	verifyNoLeaks(t)
	c := MustClient(t, redisAddr)
	start := time.Now()
	r := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Debt: 8, DebtDelay: time.Nanosecond})
	time.Sleep(50 * time.Millisecond)
	r.Close()
	elapsed := time.Since(start)
	if n, most := r.debts.flushes.Load(), int64(elapsed/time.Millisecond)+2; n > most {
		t.Fatalf("%d flushes in %v with DebtDelay 1ns, want at most one a millisecond (%d)", n, elapsed, most)
	}
}

// TestRedis_RequestsDoNotStarveCharges: requests' calls go first, but not
// all of a batch: a charge queued behind a stream of requests goes out in
// the next batch, so a request for its bucket, which waits for the charge,
// does not wait for the stream.
func TestRedis_RequestsDoNotStarveCharges(t *testing.T) {
	verifyNoLeaks(t)
	slow := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	r, _ := MustRedis(t, RedisOptions{Debt: 8, DebtDelay: time.Hour})
	mustAllow(t, r, "owes", slow, 1)
	mustAllow(t, r, "owes", slow, 1) // on debt, queued
	r.wg.Wait()
	entered, step, release := stepFlusher(r)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	ask := func(client string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := r.Allow(ctx, client, slow, 1); err != nil {
			t.Error(err)
		}
	}
	wg.Go(func() { ask("first") })
	<-entered // the first request's batch is held
	const stream = 2 * DefaultMaxCoalesce
	for i := range stream {
		wg.Go(func() { ask("new" + strconv.Itoa(i)) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.co.queued() < stream {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", r.co.queued(), stream)
		}
		time.Sleep(time.Millisecond)
	}
	r.debts.flush(r) // the charge queues behind the stream
	step <- struct{}{}
	<-entered // the second batch is taken
	step <- struct{}{}
	<-entered // the third: the second has been answered
	b := r.bucket("read", "owes", false)
	b.mu.Lock()
	owed, out := b.owed+b.owing, b.inflight != nil
	b.mu.Unlock()
	if owed != 0 || out {
		t.Fatalf("after the first batch behind the stream: owed %d, charge still out %v; the stream held the charge back", owed, out)
	}
	release()
}

// TestRedis_LookupKeepsTheBucket: a request that has looked up a client's
// bucket, idle for longer than a sweep interval, is not left deciding on a
// bucket a sweep forgets before it uses it. With the bucket forgotten, the
// next request makes a new one, and the process may owe the client its
// debt cap on each.
func TestRedis_LookupKeepsTheBucket(t *testing.T) {
	verifyNoLeaks(t)
	r, _ := MustRedis(t, RedisOptions{Debt: 8})
	b := r.bucket("read", "c", true)
	b.seen.Store(monoNanos() - 2*int64(sweepEvery)) // quiet for two intervals
	got := r.bucket("read", "c", false)             // a request looks it up
	for i := range r.buckets.shards {               // and a sweep runs before it locks it
		sh := &r.buckets.shards[i]
		sh.mu.Lock()
		sh.sweep(monoNanos(), 0)
		sh.mu.Unlock()
	}
	if now := r.bucket("read", "c", false); now != got {
		t.Fatalf("the bucket a request had just looked up was forgotten by a sweep (now %p, the request's %p)", now, got)
	}
}

// intervalsAhead is how many of p's intervals the TAT stored at key is
// ahead of Redis's clock: the units Redis holds charged and not yet
// refilled.
func intervalsAhead(t *testing.T, c rueidis.Client, key string, p apiperf.RatePolicy) float64 {
	t.Helper()
	s, err := c.Do(context.Background(), c.B().Get().Key(key).Build()).ToString()
	if err != nil {
		t.Fatalf("GET the TAT at %s: %v", key, err)
	}
	tat, _ := strconv.ParseInt(s, 10, 64)
	return float64(tat-redisTimeMicros(t, c)) / float64(p.Interval().Microseconds())
}

// settled fails unless every debt of the clients named prefix0, prefix1, ...
// that r still keeps was charged.
func settled(t *testing.T, r *Redis, prefix string, clients int) {
	t.Helper()
	for i := range clients {
		b := r.bucket("read", prefix+strconv.Itoa(i), false)
		if b == nil {
			continue
		}
		b.mu.Lock()
		owed, owing := b.owed, b.owing
		b.mu.Unlock()
		if owed != 0 || owing != 0 {
			t.Fatalf("client %d: owed %d, owing %d after the charges", i, owed, owing)
		}
	}
}

// flushedByHand returns a limiter with debt up to debt whose flush runs
// only when the test calls it (the delay is an hour), its client and its
// key prefix; it is closed at the end of the test.
func flushedByHand(t *testing.T, debt int) (*Redis, rueidis.Client, string) {
	t.Helper()
	direct := MustClient(t, redisAddr)
	prefix := MustPrefix(t, direct)
	r := newRedis(t, direct, RedisOptions{Prefix: prefix, Debt: debt, DebtDelay: time.Hour})
	t.Cleanup(r.Close)
	return r, direct, prefix
}

// stepFlusher leaves r one flusher, which before each batch sends the
// batch's number (from 1) on entered and waits for a value on step.
func stepFlusher(r *Redis) (entered chan int, step chan struct{}, release func()) {
	entered, step = make(chan int, 16), make(chan struct{})
	var batches atomic.Int32
	r.co.maxFlushers = 1
	r.co.beforeFlush = func() {
		entered <- int(batches.Add(1))
		<-step
	}
	var once sync.Once
	return entered, step, func() { once.Do(func() { close(step) }) }
}

// TestRedis_DebtWhileAChargeIsOut: a client's requests do not wait for
// the flush's call charging its earlier debt. While that call is held,
// they are allowed on debt up to the cap, counting the units in the call;
// what they owe is charged once the call returns, also when Close runs
// meanwhile.
func TestRedis_DebtWhileAChargeIsOut(t *testing.T) {
	for _, closing := range []bool{false, true} {
		t.Run(map[bool]string{false: "Flush", true: "Close"}[closing], func(t *testing.T) {
			verifyNoLeaks(t)
			p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
			const cap = 8
			r, direct, prefix := flushedByHand(t, cap)
			mustAllow(t, r, "c", p, 1) // Redis decides
			mustAllow(t, r, "c", p, 1) // on debt, queued
			r.wg.Wait()
			entered, step, release := stepFlusher(r)
			defer release()
			r.debts.flush(r)
			<-entered // the charge of one unit is out, and held there

			// cap-1 more on debt, none of them waiting for the held call.
			decided := make(chan apiperf.RateDecision, cap)
			go func() {
				for range cap - 1 {
					res, err := r.Allow(context.Background(), "c", p, 1)
					if err != nil {
						t.Error(err)
					}
					decided <- res
				}
			}()
			for i := range cap - 1 {
				select {
				case res := <-decided:
					if !res.Allowed {
						t.Fatalf("request %d on debt refused: %+v", i, res)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("request %d waits for the charge in flight", i)
				}
			}
			b := r.bucket("read", "c", false)
			b.mu.Lock()
			owed, owing := b.owed, b.owing
			b.mu.Unlock()
			if owed != cap-1 || owing != 1 {
				t.Fatalf("owed %d, owing %d with the charge held, want %d and 1", owed, owing, cap-1)
			}
			if closing {
				closed := make(chan struct{})
				go func() { r.Close(); close(closed) }()
				// Close's last flush finds nothing queued: the debt
				// taken during the call goes out when the call returns.
				step <- struct{}{} // the held charge returns
				<-entered          // the debt it left is sent
				release()
				<-closed
			} else {
				step <- struct{}{} // the held charge returns
				deadline := time.Now().Add(10 * time.Second)
				for r.debts.len() == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the debt taken during the call was not queued when it returned")
					}
					time.Sleep(time.Millisecond)
				}
				release()
				r.debts.flush(r)
				r.Close()
			}
			if a := intervalsAhead(t, direct, prefix+"{read:c}", p); a < float64(cap+1)-0.1 {
				t.Fatalf("TAT %.2f intervals ahead after %d units allowed, want %d: debt taken during the call was not charged", a, cap+1, cap+1)
			}
		})
	}
}

// TestRedis_DebtDuringARequestsCallAtClose: debt taken while a request's
// own call for the bucket is out is charged when that call returns, also
// when it returns after Close has stopped starting background calls.
func TestRedis_DebtDuringARequestsCallAtClose(t *testing.T) {
	verifyNoLeaks(t)
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	const cap = 8
	r, direct, prefix := flushedByHand(t, cap)
	mustAllow(t, r, "c", p, 1) // Redis decides: the bucket is known
	r.wg.Wait()
	entered, _, release := stepFlusher(r)
	// A request over the debt cap makes its own call, held.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer release()
	wg.Go(func() {
		if res, err := r.Allow(context.Background(), "c", p, cap+1); err != nil || !res.Allowed {
			t.Errorf("cost %d: %+v, %v", cap+1, res, err)
		}
	})
	<-entered
	const owed = 3
	for i := range owed {
		if res := mustAllow(t, r, "c", p, 1); !res.Allowed {
			t.Fatalf("request %d on debt refused: %+v", i, res)
		}
	}
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	for {
		r.closeMu.RLock()
		c := r.closed
		r.closeMu.RUnlock()
		if c {
			break
		}
		time.Sleep(time.Millisecond)
	}
	release() // the request's call returns, Close is under way
	wg.Wait()
	<-closed
	if a, want := intervalsAhead(t, direct, prefix+"{read:c}", p), float64(1+cap+1+owed); a < want-0.1 {
		t.Fatalf("TAT %.2f intervals ahead after %.0f units allowed and Close: the debt taken during the request's call was not charged", a, want)
	}
}

// TestRedis_NoDebtOnceClosing: a request that arrives while Close waits
// for a call still out is decided by Redis, not on debt: by then no flush
// is left and no new call may start, so debt taken then would never be
// charged.
func TestRedis_NoDebtOnceClosing(t *testing.T) {
	verifyNoLeaks(t)
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	r, direct, prefix := flushedByHand(t, 8)
	mustAllow(t, r, "a", p, 1) // Redis decides: "a" is known, and far from its limit
	mustAllow(t, r, "b", p, 1)
	mustAllow(t, r, "b", p, 1) // on debt, queued
	r.wg.Wait()
	entered, _, release := stepFlusher(r)
	defer release()
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	<-entered // Close's last flush: "b"'s charge is out, and held there
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.closeMu.RLock()
		c := r.closed
		r.closeMu.RUnlock()
		if c {
			break // Close now waits for the held call
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not get to waiting for the held call")
		}
		time.Sleep(time.Millisecond)
	}
	decided := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := r.Allow(ctx, "a", p, 1)
		decided <- err
	}()
	release()
	if err := <-decided; err != nil {
		t.Fatal(err)
	}
	<-closed
	if a := intervalsAhead(t, direct, prefix+"{read:a}", p); a < 1.9 {
		t.Fatalf("TAT %.2f intervals ahead after 2 units allowed, want 2: the request during Close went on debt and was never charged", a)
	}
}
