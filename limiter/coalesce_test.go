package limiter

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/redis/rueidis"
)

// TestRedis_Coalesce checks on the machine's Redis that concurrent script
// calls for different clients share round trips and decide exactly as
// calls of their own would.
func TestRedis_Coalesce(t *testing.T) {
	verifyNoLeaks(t)
	coalesced(t, false, redisAddr)
}

// coalesced runs the coalescing checks on the Redis at addrs. On a Cluster
// a batch goes out as a pipeline of single-bucket calls, each counted as a
// round trip, so the count of round trips is checked on standalone only.
func coalesced(t *testing.T, cluster bool, addrs ...string) {
	c := MustClient(t, addrs...)
	ctx := context.Background()

	// newHeld returns a limiter with one flusher, which signals on entered
	// and then waits, before each batch, until release is closed.
	newHeld := func(t *testing.T, opts RedisOptions) (r *Redis, entered, release chan struct{}) {
		opts.Prefix = MustPrefix(t, c)
		r = newRedis(t, c, opts)
		t.Cleanup(r.Close)
		r.co.maxFlushers = 1
		entered, release = make(chan struct{}, 1), make(chan struct{})
		r.co.beforeFlush = func() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		return r, entered, release
	}
	// waitQueued waits until n calls wait for the next batch.
	waitQueued := func(t *testing.T, r *Redis, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for r.co.queued() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d calls queued after 10s, want %d", r.co.queued(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	t.Run("OneRoundTripForTheQueue", func(t *testing.T) {
		for _, mode := range []struct {
			name string
			opts RedisOptions
		}{{"Plain", RedisOptions{Plain: true}}, {"Batched", RedisOptions{}}} {
			t.Run(mode.name, func(t *testing.T) {
				r, entered, release := newHeld(t, mode.opts)
				p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 3}
				// The first call goes out alone and is held; the next 40,
				// for 40 other clients, queue behind it meanwhile.
				var wg sync.WaitGroup
				results := make([]apiperf.RateDecision, 41)
				errs := make([]error, 41)
				call := func(i int) {
					results[i], errs[i] = r.Allow(ctx, "c"+strconv.Itoa(i), p, 1)
				}
				wg.Go(func() { call(0) })
				<-entered // the flusher took call 0 and waits
				for i := 1; i <= 40; i++ {
					wg.Go(func() { call(i) })
				}
				waitQueued(t, r, 40)
				close(release)
				wg.Wait()
				for i := range results {
					if errs[i] != nil || !results[i].Allowed || results[i].Limit != 3 {
						t.Fatalf("client %d: %+v, %v; want allowed", i, results[i], errs[i])
					}
				}
				if n := r.calls.Load(); !cluster && n != 2 {
					t.Fatalf("%d round trips for 41 clients, want 2 (the held call, then the 40 queued behind it)", n)
				}
				// Every client got its own bucket: each has its burst less
				// what it used (one, or a batch in batched mode) and
				// exactly its burst in all.
				for i := range 41 {
					n := 1 + allowedOf(t, r, "c"+strconv.Itoa(i), p, 5)
					if n != 3 {
						t.Fatalf("client %d: allowed %d in all with burst 3", i, n)
					}
				}
			})
		}
	})

	t.Run("ExactUnderConcurrency", func(t *testing.T) {
		// 20 clients, 100 goroutines, burst 7: whatever the batches, each
		// client gets exactly its burst.
		for _, opts := range []RedisOptions{{Plain: true}, {}} {
			opts.Prefix = MustPrefix(t, c)
			r := newRedis(t, c, opts)
			p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 7}
			var allowed [20]atomic.Int64
			var wg sync.WaitGroup
			for g := range 100 {
				wg.Go(func() {
					for i := range 20 {
						k := (g + i) % 20
						res, err := r.Allow(ctx, "x"+strconv.Itoa(k), p, 1)
						if err != nil {
							t.Error(err)
							return
						}
						if res.Allowed {
							allowed[k].Add(1)
						}
					}
				})
			}
			wg.Wait()
			r.Close()
			for k := range allowed {
				if n := allowed[k].Load(); n != 7 {
					t.Fatalf("plain=%v client %d: allowed %d of 100, want exactly the burst (7)", opts.Plain, k, n)
				}
			}
			t.Logf("plain=%v: 2000 decisions, %d round trips", opts.Plain, r.calls.Load())
		}
	})

	// With the default flushers, a batch stalled on its reply holds up
	// only the calls in it: here the first batch is held until the next
	// call, for another client, has been decided.
	t.Run("AStalledBatchHoldsOnlyItsCalls", func(t *testing.T) {
		r := newRedis(t, c, RedisOptions{Prefix: MustPrefix(t, c), Plain: true})
		t.Cleanup(r.Close)
		var first atomic.Bool
		entered, release := make(chan struct{}), make(chan struct{})
		r.co.beforeFlush = func() {
			if first.CompareAndSwap(false, true) {
				close(entered)
				<-release
			}
		}
		p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 3}
		var wg sync.WaitGroup
		wg.Go(func() { mustAllow(t, r, "stalled", p, 1) })
		<-entered
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := r.Allow(tctx, "other", p, 1)
		cancel()
		close(release)
		wg.Wait()
		if err != nil || !res.Allowed {
			t.Fatalf("a call behind a stalled batch: %+v, %v; want allowed without waiting for it", res, err)
		}
	})

	t.Run("GivingUpWhileQueued", func(t *testing.T) {
		r, entered, release := newHeld(t, RedisOptions{Plain: true})
		p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 3}
		var wg sync.WaitGroup
		wg.Go(func() { mustAllow(t, r, "first", p, 1) })
		<-entered
		tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := r.Allow(tctx, "late", p, 1)
		cancel()
		if apiperf.ErrorCode(err) != apiperf.EUNAVAILABLE || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("deadline passed while queued: %v, want EUNAVAILABLE wrapping the deadline", err)
		}
		close(release)
		wg.Wait()
		// The call given up on was not sent when its batch went out, as
		// its deadline had passed: the client still has its whole burst.
		n := allowedOf(t, r, "late", p, 5)
		if n != 3 {
			t.Fatalf("after a call given up on: allowed %d with burst 3, want 3", n)
		}
	})

	// On Cluster a batch is a pipeline of EVALSHA: no SCRIPT LOAD per
	// batch once Preload ran, and a master that lost the script (here
	// flushed; in life restarted or failed over) costs one reload, with
	// only its own calls sent again, so no client is charged twice.
	if cluster {
		t.Run("EvalshaPipeline", func(t *testing.T) {
			var nodes []rueidis.Client
			for _, n := range c.Nodes() {
				nodes = append(nodes, n)
			}
			loads := func() int {
				n := 0
				for _, node := range nodes {
					info, err := node.Do(ctx, node.B().Info().Section("commandstats").Build()).ToString()
					if err != nil {
						t.Fatal(err)
					}
					if m := regexp.MustCompile(`cmdstat_script\|load:calls=(\d+)`).FindStringSubmatch(info); m != nil {
						k, _ := strconv.Atoi(m[1])
						n += k
					}
				}
				return n
			}
			p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 3}
			// batch runs prepare, then sends one call on a new limiter,
			// holds it, queues 40 more behind it and lets both batches go;
			// it returns the limiter, whose flushes are no longer held.
			batch := func(prepare func()) *Redis {
				r, entered, release := newHeld(t, RedisOptions{Plain: true})
				prepare()
				var wg sync.WaitGroup
				wg.Go(func() { mustAllow(t, r, "c0", p, 1) })
				<-entered
				for i := 1; i <= 40; i++ {
					wg.Go(func() { mustAllow(t, r, "c"+strconv.Itoa(i), p, 1) })
				}
				waitQueued(t, r, 40)
				close(release)
				wg.Wait()
				return r
			}
			// exact fails unless each client has exactly its burst less
			// the one it used: a call sent twice would have taken two.
			exact := func(r *Redis) {
				for i := range 41 {
					n := 1 + allowedOf(t, r, "c"+strconv.Itoa(i), p, 4)
					if n != 3 {
						t.Fatalf("client %d: allowed %d in all with burst 3", i, n)
					}
				}
			}
			if err := newRedis(t, c, RedisOptions{}).Preload(ctx); err != nil {
				t.Fatal(err)
			}
			before := loads()
			r := batch(func() {})
			if n := loads() - before; n != 0 || r.co.noscripts.Load() != 0 {
				t.Fatalf("%d SCRIPT LOADs and %d NOSCRIPT pipelines for two batches after Preload, want none", n, r.co.noscripts.Load())
			}
			exact(r)
			// Every node forgets its scripts. The first, held call goes
			// out alone (EVALSHA, then EVAL on NOSCRIPT, which leaves the
			// script on its master), so the 40 behind it find the script
			// on one master and not on the others: a pipeline part run,
			// part refused.
			r = batch(func() {
				for _, node := range nodes {
					if err := node.Do(ctx, node.B().ScriptFlush().Build()).Error(); err != nil {
						t.Fatal(err)
					}
				}
			})
			if r.co.noscripts.Load() == 0 {
				t.Fatal("no batch saw NOSCRIPT after a master lost the script; the test proves nothing")
			}
			exact(r)
		})
	}
}
