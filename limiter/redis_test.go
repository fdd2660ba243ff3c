package limiter

import (
	"context"
	"math"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/redis/rueidis"
)

// redisModes are the two ways Redis decides: one script call per request,
// and batches of reserved tokens (with the default window, and with a wide
// one so that batches are really taken in the tests' slow policies).
var redisModes = []struct {
	name string
	opts RedisOptions
}{
	{"Plain", RedisOptions{Plain: true}},
	{"Batched", RedisOptions{}},
	{"BatchedWide", RedisOptions{BatchWindow: 2 * time.Second}},
}

// debtModes allow requests on debt (RedisOptions.Debt); the guarantee is
// then burst + rate x t + replicas x Debt.
var debtModes = []struct {
	name string
	opts RedisOptions
}{
	{"Debt1", RedisOptions{Debt: 1}},
	{"Debt3Wide", RedisOptions{Debt: 3, BatchWindow: 2 * time.Second}},
	{"Debt8Delayed", RedisOptions{Debt: 8, DebtDelay: 50 * time.Millisecond}},
}

// slack is what a mode may allow beyond burst + rate x t with n replicas
// under a policy of burst.
func slack(opts RedisOptions, n, burst int) int { return n * min(opts.Debt, burst/8) }

// MustRedis returns a Redis limiter with a unique prefix on the shared
// Redis, closed at the end of the test.
func MustRedis(tb testing.TB, opts RedisOptions) (*Redis, rueidis.Client) {
	tb.Helper()
	c := MustClient(tb, redisAddr)
	opts.Prefix = MustPrefix(tb, c)
	r := newRedis(tb, c, opts)
	tb.Cleanup(r.Close)
	return r, c
}

func TestRedis_Allow(t *testing.T) {
	for _, mode := range redisModes {
		t.Run(mode.name, func(t *testing.T) {
			verifyNoLeaks(t)
			r, c := MustRedis(t, mode.opts)
			ctx := context.Background()

			t.Run("BurstIsTheMostAtOnce", func(t *testing.T) {
				// A policy that refills once an hour: however the requests
				// interleave, exactly Burst of them are allowed.
				p := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 20}
				var allowed atomic.Int64
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						for range 10 {
							res, err := r.Allow(ctx, "burst", p, 1)
							if err != nil {
								t.Error(err)
								return
							}
							if res.Allowed {
								allowed.Add(1)
							} else if res.RetryAfter <= 0 {
								t.Errorf("refused with RetryAfter %v", res.RetryAfter)
							}
						}
					})
				}
				wg.Wait()
				if n := allowed.Load(); n != 20 {
					t.Fatalf("allowed %d of 80 concurrent requests, want exactly the burst (20)", n)
				}
			})

			t.Run("RetryAfterIsOneInterval", func(t *testing.T) {
				p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second, Burst: 3} // T = 100ms
				start := time.Now()
				for i := range 3 {
					if res := mustAllow(t, r, "retry", p, 1); !res.Allowed {
						t.Fatalf("request %d of the burst refused: %+v", i, res)
					}
				}
				res := mustAllow(t, r, "retry", p, 1)
				elapsed := time.Since(start)
				if res.Allowed || res.RetryAfter > 100*time.Millisecond || res.RetryAfter < 100*time.Millisecond-elapsed {
					t.Fatalf("4th request: %+v after %v; want refused with RetryAfter in [100ms-%v, 100ms]", res, elapsed, elapsed)
				}
				time.Sleep(res.RetryAfter - 30*time.Millisecond)
				if early := mustAllow(t, r, "retry", p, 1); early.Allowed {
					t.Fatalf("allowed 30ms before RetryAfter: %+v", early)
				}
				time.Sleep(30*time.Millisecond + time.Millisecond)
				if late := mustAllow(t, r, "retry", p, 1); !late.Allowed {
					t.Fatalf("refused right after RetryAfter: %+v", late)
				}
			})

			t.Run("CostAboveBurstIsInvalid", func(t *testing.T) {
				p := apiperf.RatePolicy{Name: "write", Rate: 10, Period: time.Second, Burst: 3}
				calls := r.calls.Load()
				for range 3 {
					if res, err := r.Allow(ctx, "big", p, 4); apiperf.ErrorCode(err) != apiperf.EINVALID {
						t.Fatalf("cost 4 > burst 3: %+v, %v; want EINVALID", res, err)
					}
				}
				if n := r.calls.Load() - calls; n != 0 {
					t.Fatalf("%d script calls for costs no wait can satisfy, want none", n)
				}
				// The refusals consumed nothing: the whole burst is still there.
				if res := mustAllow(t, r, "big", p, 3); !res.Allowed {
					t.Fatalf("cost == burst after refusals: %+v, want allowed", res)
				}
			})

			t.Run("StateIsExactIntegerMicroseconds", func(t *testing.T) {
				// One request per minute: each request moves the TAT by
				// exactly 60e6µs. A TAT written as a Lua float string would
				// be rounded to 14 significant digits (100µs steps).
				p := apiperf.RatePolicy{Name: "exact", Rate: 1, Period: time.Minute, Burst: 3}
				key := r.prefix + "{exact:int}"
				var tats []int64
				for range 3 {
					if res := mustAllow(t, r, "int", p, 1); !res.Allowed {
						t.Fatalf("refused: %+v", res)
					}
					s, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString()
					if err != nil {
						t.Fatalf("GET %s: %v", key, err)
					}
					if !regexp.MustCompile(`^[0-9]+$`).MatchString(s) {
						t.Fatalf("stored TAT %q is not a plain integer", s)
					}
					v, _ := strconv.ParseInt(s, 10, 64)
					tats = append(tats, v)
				}
				if tats[1]-tats[0] != 60e6 || tats[2]-tats[1] != 60e6 {
					t.Fatalf("TATs %v do not step by exactly 60000000µs", tats)
				}
				now := redisTimeMicros(t, c)
				if d := tats[2] - now; d <= 179e6 || d > 180e6 {
					t.Fatalf("TAT is %dµs ahead of Redis time, want just under 180s", d)
				}
				// The key expires when the bucket is full again.
				pttl, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
				if err != nil || pttl <= 179000 || pttl > 180000 {
					t.Fatalf("PTTL = %d (%v), want just under 180000ms", pttl, err)
				}
			})

			t.Run("Invalid", func(t *testing.T) {
				p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second, Burst: 3}
				if _, err := r.Allow(ctx, "x", p, 0); apiperf.ErrorCode(err) != apiperf.EINVALID {
					t.Fatalf("cost 0: err %v, want EINVALID", err)
				}
			})
		})
	}
}

func redisTimeMicros(t *testing.T, c rueidis.Client) int64 {
	t.Helper()
	v, err := c.Do(context.Background(), c.B().Time().Build()).AsStrSlice()
	if err != nil || len(v) != 2 {
		t.Fatalf("TIME: %v %v", v, err)
	}
	s, _ := strconv.ParseInt(v[0], 10, 64)
	us, _ := strconv.ParseInt(v[1], 10, 64)
	return s*1e6 + us
}

// TestRedis_MatchesLocal replays one sequence on Local with a fake clock and
// on Redis in real time and expects the same decisions. Every step sits at
// least 100ms from a boundary, so a call less than 90ms late decides as
// Local does; durations may differ by as much as the calls were late. A run
// with a call later than that (a busy machine) proves nothing either way
// and is replayed on fresh keys.
func TestRedis_MatchesLocal(t *testing.T) {
	p := apiperf.RatePolicy{Name: "seq", Rate: 5, Period: time.Second, Burst: 3} // T = 200ms
	steps := []matchStep{
		{0, 1, true, 2, 0},
		{0, 1, true, 1, 0},
		{0, 1, true, 0, 0},
		{0, 1, false, 0, 200 * time.Millisecond},
		{100 * time.Millisecond, 1, false, 0, 100 * time.Millisecond},
		{300 * time.Millisecond, 1, true, 0, 0},
		{300 * time.Millisecond, 2, false, 0, 300 * time.Millisecond},
		{700 * time.Millisecond, 2, true, 0, 0},
		{1500 * time.Millisecond, 3, true, 0, 0},
		{1500 * time.Millisecond, 1, false, 0, 200 * time.Millisecond},
	}

	clk := newFakeClock()
	local := NewLocal()
	local.Now = clk.Now
	var want []apiperf.RateDecision
	var elapsed time.Duration
	for i, s := range steps {
		clk.Advance(s.at - elapsed)
		elapsed = s.at
		res := mustAllow(t, local, "c", p, s.cost)
		if res.Allowed != s.allowed || res.Remaining != s.remain || res.RetryAfter != s.retry {
			t.Fatalf("Local step %d (%v cost %d): %+v, want allowed %v remaining %d retry %v",
				i, s.at, s.cost, res, s.allowed, s.remain, s.retry)
		}
		want = append(want, res)
	}

	for _, mode := range redisModes {
		t.Run(mode.name, func(t *testing.T) {
			verifyNoLeaks(t)
			for attempt := 1; ; attempt++ {
				late, judged := replayOnRedis(t, mode.opts, p, steps, want)
				if judged {
					return
				}
				if attempt == 5 {
					t.Fatalf("%d replays had a call %v late or more; the machine is too busy to judge", attempt, late)
				}
				t.Logf("replay %d had a call %v late; replaying", attempt, late)
			}
		})
	}
}

// matchStep is one request of TestRedis_MatchesLocal and Local's answer.
type matchStep struct {
	at      time.Duration // since the first request
	cost    int
	allowed bool
	remain  int
	retry   time.Duration
}

// replayOnRedis runs steps on a fresh Redis limiter and fails t on the
// first decision that differs from want. It stops early, reporting
// judged false, at a call that returned too late to be judged.
func replayOnRedis(t *testing.T, opts RedisOptions, p apiperf.RatePolicy, steps []matchStep, want []apiperf.RateDecision) (late time.Duration, judged bool) {
	const tooLate = 90 * time.Millisecond
	r, _ := MustRedis(t, opts)
	defer r.Close()
	if err := r.Preload(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var maxLate time.Duration
	for i, s := range steps {
		time.Sleep(time.Until(start.Add(s.at)))
		got := mustAllow(t, r, "c", p, s.cost)
		// Redis decided this call somewhere between its step time and
		// now, and the first call as late as the first return: the time
		// Redis saw differs from Local's by less than the latest return.
		late := time.Since(start) - s.at
		if late >= tooLate {
			return late, false
		}
		maxLate = max(maxLate, late)
		tolerance := maxLate + 10*time.Millisecond
		if got.Allowed != want[i].Allowed {
			t.Fatalf("step %d (%v cost %d): Redis %+v, Local %+v", i, s.at, s.cost, got, want[i])
		}
		if d := (want[i].RetryAfter - got.RetryAfter).Abs(); d > tolerance {
			t.Fatalf("step %d: RetryAfter Redis %v, Local %v (calls up to %v late)", i, got.RetryAfter, want[i].RetryAfter, maxLate)
		}
		if opts.Plain {
			// Batched results estimate Remaining; plain ones are exact.
			if got.Remaining != want[i].Remaining {
				t.Fatalf("step %d: Remaining Redis %d, Local %d", i, got.Remaining, want[i].Remaining)
			}
			if d := (want[i].ResetAfter - got.ResetAfter).Abs(); d > tolerance {
				t.Fatalf("step %d: ResetAfter Redis %v, Local %v (calls up to %v late)", i, got.ResetAfter, want[i].ResetAfter, maxLate)
			}
		}
	}
	return maxLate, true
}

// exactnessBurst is the burst of exactness's policy.
const exactnessBurst = 20

// exactness sends 200 requests over about one second, round robin over the
// limiters (one goroutine each, as separate replicas would), under 10/1s
// burst 20, and checks the global guarantee: at most 20 + 10 per second the
// decisions took (+ extra, the debt the limiters may take) allowed, at
// least the burst, every refusal with a positive RetryAfter. A busy
// machine that sends late only widens the bound by what it took.
func exactness(t *testing.T, limiters []Limiter, key string, extra int) {
	t.Helper()
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second, Burst: exactnessBurst}
	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for k, l := range limiters {
		wg.Go(func() {
			for i := k; i < 200; i += len(limiters) {
				// 4.9ms apart, the last at 975ms.
				at := start.Add(time.Duration(i) * 4900 * time.Microsecond)
				time.Sleep(time.Until(at))
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				res, err := l.Allow(ctx, key, p, 1)
				cancel()
				switch {
				case err != nil:
					t.Errorf("request %d: %v", i, err)
				case res.Allowed:
					allowed.Add(1)
				case res.RetryAfter <= 0:
					t.Errorf("request %d refused with RetryAfter %v", i, res.RetryAfter)
				default:
					denied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	a, d := allowed.Load(), denied.Load()
	// Every decision lies within [start, start+took]: burst + took/T.
	bound := int64(exactnessBurst) + int64(math.Ceil(took.Seconds()*10)) + int64(extra)
	t.Logf("allowed %d, refused %d in %v (bound %d)", a, d, took, bound)
	if a > bound || a < 20 {
		t.Fatalf("allowed %d requests in %v, want between 20 (the burst) and %d (burst + rate x time + %d of debt)", a, took, bound, extra)
	}
	if a+d != 200 {
		t.Fatalf("%d decisions, want 200", a+d)
	}
}

func TestRedis_Exactness(t *testing.T) {
	for _, mode := range redisModes {
		t.Run(mode.name, func(t *testing.T) {
			verifyNoLeaks(t)
			limiters, _ := replicaLimiters(t, mode.opts, redisAddr)
			exactness(t, limiters, "client-a", 0)
		})
	}
	for _, mode := range debtModes {
		t.Run(mode.name, func(t *testing.T) {
			verifyNoLeaks(t)
			limiters, _ := replicaLimiters(t, mode.opts, redisAddr)
			exactness(t, limiters, "client-a", slack(mode.opts, len(limiters), exactnessBurst))
		})
	}
}

// TestRedis_Batched checks what batching is for: a client far from its
// limit costs few round trips, and concurrent requests share one call.
func TestRedis_Batched(t *testing.T) {
	verifyNoLeaks(t)
	r, _ := MustRedis(t, RedisOptions{})
	p := apiperf.RatePolicy{Name: "read", Rate: 100000, Period: time.Second, Burst: 100000} // T = 10µs

	// A batch spans its window of slot times however fast it is spent, so
	// with the default 100ms a slow run needs a call per 100ms whatever
	// the number of requests. A 1s window (batches of 50000, half the
	// bucket) keeps the count of calls about requests, not about how busy
	// the machine is.
	wide, _ := MustRedis(t, RedisOptions{BatchWindow: time.Second})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for range 200 {
				res, err := wide.Allow(context.Background(), "far", p, 1)
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
	wg.Wait()
	calls := wide.calls.Load()
	t.Logf("3200 requests in %v, %d script calls", time.Since(start), calls)
	if allowed.Load() != 3200 {
		t.Fatalf("allowed %d of 3200 requests far below the limit", allowed.Load())
	}
	if calls > 10 {
		t.Fatalf("%d script calls for 3200 concurrent requests far below the limit, want a handful", calls)
	}

	// A steady client far below its limit: after the first call, the next
	// batches arrive in the background before the current one runs out.
	t.Run("Prefetch", func(t *testing.T) {
		for attempt := 1; ; attempt++ {
			if steadyClient(t, p) {
				return
			}
			if attempt == 5 {
				t.Fatalf("%d runs had the test's goroutine stalled; the machine is too busy to judge", attempt)
			}
		}
	})

	// A reservation is spent only up to one interval before its slot time.
	// Replica a takes a batch of 10 (slots at 200ms..2000ms, so usable
	// until 0ms..1800ms) and uses one; 1050ms later four of its slots are
	// still usable (until 1200ms..1800ms) and Redis has 15 free: a and b
	// together get 19, within the burst, however they interleave. The
	// judgement needs a's call back within 50ms and both counts done
	// before 1200ms; a run that misses that schedule on a busy machine
	// proves nothing either way and is tried again.
	t.Run("ExpiredReservationsAreNotSpent", func(t *testing.T) {
		c := MustClient(t, redisAddr)
		for attempt := 1; ; attempt++ {
			na, nb, judged := expiredReservations(t, c)
			if judged {
				if na != 4 || nb != 15 {
					t.Fatalf("at 1050ms: replica a allowed %d, b %d; want 4 (a's usable slots) and 15", na, nb)
				}
				return
			}
			if attempt == 5 {
				t.Fatalf("%d attempts missed the schedule; the machine is too busy to judge", attempt)
			}
			t.Logf("attempt %d missed the schedule (a %d, b %d); trying again", attempt, na, nb)
		}
	})

	// Near the limit every decision goes back to Redis: a policy with a
	// burst of 2 never hands out more than one spare token.
	before := r.calls.Load()
	q := apiperf.RatePolicy{Name: "read", Rate: 1, Period: time.Hour, Burst: 2}
	n := 0
	for range 10 {
		if res := mustAllow(t, r, "near", q, 1); res.Allowed {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("allowed %d with burst 2", n)
	}
	// Two grants, then one refusal that is cached for the rest.
	if c := r.calls.Load() - before; c != 3 {
		t.Fatalf("%d script calls near the limit, want 3 (two grants of one, one cached refusal)", c)
	}
}

// steadyClient runs one attempt of TestRedis_Batched/Prefetch: a request
// every 100µs or so for 350ms on fresh keys. A request refills on its own
// path only when no request came during the last quarter-window of the
// batch before it (prefetchLead): the first one, and one after a stall of
// the test's goroutine, which a busy machine can cause. Any other refill
// is a prefetch that did not happen and fails t; a run with a stall is not
// judged further (judged false).
func steadyClient(t *testing.T, p apiperf.RatePolicy) (judged bool) {
	r, _ := MustRedis(t, RedisOptions{})
	defer r.Close()
	prefetchLead := DefaultBatchWindow / 4
	start := time.Now()
	n, stalls := 0, 0
	var prevStart time.Time
	for time.Since(start) < 350*time.Millisecond {
		reqStart, refills := time.Now(), r.refills.Load()
		if res := mustAllow(t, r, "steady", p, 1); !res.Allowed {
			t.Fatalf("refused far below the limit: %+v", res)
		}
		// The previous request decided after prevStart, this one before
		// now: less than the lead apart, the previous one saw the end of
		// the batch coming and should have fetched the next.
		gap := time.Since(prevStart)
		switch {
		case n == 0:
		case gap >= prefetchLead:
			stalls++
		case r.refills.Load() != refills:
			t.Fatalf("request %d refilled on its own path %v after the previous one: no prefetch", n, gap)
		}
		prevStart = reqStart
		n++
		time.Sleep(100 * time.Microsecond)
	}
	calls, waits := r.calls.Load(), r.refills.Load()
	t.Logf("%d requests over 350ms: %d script calls, %d of them waited for, %d stalls", n, calls, waits, stalls)
	if stalls > 0 {
		return false
	}
	if calls < 3 || waits != 1 {
		t.Fatalf("%d calls of which %d on the request path; want batches every 100ms fetched ahead", calls, waits)
	}
	return true
}

// expiredReservations runs one attempt of ExpiredReservationsAreNotSpent
// on fresh keys and reports what each replica allowed, and whether the
// schedule that makes those numbers certain was met.
func expiredReservations(t *testing.T, c rueidis.Client) (na, nb int, judged bool) {
	opts := RedisOptions{Prefix: MustPrefix(t, c), BatchWindow: 2 * time.Second}
	a, b := newRedis(t, c, opts), newRedis(t, c, opts)
	defer a.Close()
	defer b.Close()
	p := apiperf.RatePolicy{Name: "read", Rate: 5, Period: time.Second, Burst: 20} // T = 200ms
	if err := a.Preload(context.Background()); err != nil {                        // the timed call then pays no NOSCRIPT
		t.Fatal(err)
	}
	start := time.Now()
	if res := mustAllow(t, a, "hoard", p, 1); !res.Allowed {
		t.Fatalf("first request refused: %+v", res)
	}
	if time.Since(start) >= 50*time.Millisecond {
		return 0, 0, false
	}
	time.Sleep(time.Until(start.Add(1050 * time.Millisecond)))
	nb = allowedOf(t, b, "hoard", p, 30)
	na = allowedOf(t, a, "hoard", p, 30)
	return na, nb, time.Since(start) < 1200*time.Millisecond
}

// TestRedis_ExactnessUnderLoad hammers one client from three replicas, each
// alternating bursts and pauses so that batches sit unspent for a while,
// and checks the guarantee over every interval, not only the whole run:
// the allowed requests between any two of them number at most
// Burst + elapsed/T, where elapsed is taken as long as the calls' timing
// allows, so that slow calls can only weaken the check, never fail it.
// The large burst makes batches big enough to be prefetched.
func TestRedis_ExactnessUnderLoad(t *testing.T) {
	for _, p := range []apiperf.RatePolicy{
		{Name: "read", Rate: 1000, Period: time.Second, Burst: 50},  // T = 1ms
		{Name: "read", Rate: 1000, Period: time.Second, Burst: 400}, // batches of up to 100
	} {
		for _, mode := range append(redisModes, debtModes...) {
			t.Run(mode.name+"/Burst"+strconv.Itoa(p.Burst), func(t *testing.T) {
				verifyNoLeaks(t)
				hammer(t, mode.opts, p)
			})
		}
	}
}

func hammer(t *testing.T, opts RedisOptions, p apiperf.RatePolicy) {
	// Each allowed request is known to have been decided somewhere between
	// the call's start and its return.
	type span struct{ from, to time.Duration }
	var mu sync.Mutex
	var spans []span
	var wg sync.WaitGroup
	var limiters []*Redis
	var requests atomic.Int64
	start := time.Now()
	for i := range 3 {
		c := MustClient(t, redisAddr)
		if i == 0 {
			opts.Prefix = MustPrefix(t, c)
		}
		l := newRedis(t, c, opts)
		t.Cleanup(l.Close)
		limiters = append(limiters, l)
		for g := range 3 {
			wg.Go(func() {
				for time.Since(start) < time.Second {
					for range 20 + 10*g {
						from := time.Since(start)
						requests.Add(1)
						res, err := l.Allow(context.Background(), "hot", p, 1)
						if err != nil {
							t.Error(err)
							return
						}
						if res.Allowed {
							to := time.Since(start)
							mu.Lock()
							spans = append(spans, span{from, to})
							mu.Unlock()
						}
					}
					time.Sleep(time.Duration(5+7*i+3*g) * time.Millisecond)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	var calls int64
	for _, l := range limiters {
		calls += l.calls.Load()
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.from - b.from) })
	n := len(spans)
	burst := p.Burst + slack(opts, len(limiters), p.Burst)
	t.Logf("allowed %d of %d in %v (bound %d), %d script calls", n, requests.Load(), elapsed, burst+int(elapsed/time.Millisecond), calls)
	if n > burst+int(elapsed/time.Millisecond) {
		t.Fatalf("allowed %d in %v, more than burst + rate x time", n, elapsed)
	}
	// The client asks for many times its rate, so it should get at least
	// half of it; a machine too busy to send that many requests gets half
	// of what it sent instead, rather than a failure for its slowness.
	if floor := int(min(requests.Load(), int64(elapsed/time.Millisecond))) / 2; n < floor {
		t.Fatalf("allowed only %d of %d requests in %v to a client over its limit, want at least %d", n, requests.Load(), elapsed, floor)
	}
	// Requests i..j (ordered by start) were all decided between the start
	// of i and the latest return among them: at most Burst + that/T of them
	// may have been allowed.
	for i := range n {
		latest := spans[i].to
		for j := i + 1; j < n; j++ {
			latest = max(latest, spans[j].to)
			length := latest - spans[i].from
			if count, bound := j-i+1, burst+int(length/time.Millisecond); count > bound {
				t.Fatalf("%d allowed within %v (from %v), bound %d", count, length, spans[i].from, bound)
			}
		}
	}
}

// replicaLimiters is three Redis limiters with their own clients (one per
// replica) sharing one fresh key prefix, which it returns, on the Redis at addrs.
func replicaLimiters(t *testing.T, opts RedisOptions, addrs ...string) ([]Limiter, string) {
	t.Helper()
	var limiters []Limiter
	for i := range 3 {
		c := MustClient(t, addrs...)
		if i == 0 {
			opts.Prefix = MustPrefix(t, c)
		}
		l := newRedis(t, c, opts)
		t.Cleanup(l.Close)
		limiters = append(limiters, l)
	}
	return limiters, opts.Prefix
}
