package limiter

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// fakeClock is a settable clock for Local.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func mustAllow(t *testing.T, l Limiter, key string, p apiperf.RatePolicy, cost int) apiperf.RateDecision {
	t.Helper()
	r, err := l.Allow(context.Background(), key, p, cost)
	if err != nil {
		t.Fatalf("Allow(%q, %+v, %d): %v", key, p, cost, err)
	}
	return r
}

// allowedOf asks l tries times for one unit for key under p and counts
// the requests allowed.
func allowedOf(t *testing.T, l Limiter, key string, p apiperf.RatePolicy, tries int) int {
	t.Helper()
	n := 0
	for range tries {
		if mustAllow(t, l, key, p, 1).Allowed {
			n++
		}
	}
	return n
}

func TestLocal_Allow(t *testing.T) {
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second, Burst: 20} // T = 100ms

	t.Run("BurstThenRefuse", func(t *testing.T) {
		clk := newFakeClock()
		l := NewLocal()
		l.Now = clk.Now
		for i := range 20 {
			r := mustAllow(t, l, "c", p, 1)
			if !r.Allowed || r.Remaining != 19-i || r.Limit != 20 {
				t.Fatalf("request %d: %+v, want allowed with %d remaining", i, r, 19-i)
			}
		}
		r := mustAllow(t, l, "c", p, 1)
		if r.Allowed || r.RetryAfter != 100*time.Millisecond || r.Remaining != 0 || r.ResetAfter != 2*time.Second {
			t.Fatalf("request 21: %+v, want refused, retry after exactly one interval (100ms), reset 2s", r)
		}
		clk.Advance(99 * time.Millisecond)
		if r := mustAllow(t, l, "c", p, 1); r.Allowed || r.RetryAfter != time.Millisecond {
			t.Fatalf("1ms early: %+v, want refused with 1ms to wait", r)
		}
		clk.Advance(time.Millisecond)
		if r := mustAllow(t, l, "c", p, 1); !r.Allowed || r.Remaining != 0 {
			t.Fatalf("after RetryAfter: %+v, want allowed", r)
		}
		// Other keys and policies are independent.
		if r := mustAllow(t, l, "other", p, 1); !r.Allowed || r.Remaining != 19 {
			t.Fatalf("other key: %+v", r)
		}
		w := p
		w.Name = "write"
		if r := mustAllow(t, l, "c", w, 1); !r.Allowed || r.Remaining != 19 {
			t.Fatalf("other policy: %+v", r)
		}
	})

	t.Run("Cost", func(t *testing.T) {
		clk := newFakeClock()
		l := NewLocal()
		l.Now = clk.Now
		if r := mustAllow(t, l, "c", p, 15); !r.Allowed || r.Remaining != 5 {
			t.Fatalf("cost 15: %+v", r)
		}
		r := mustAllow(t, l, "c", p, 6)
		if r.Allowed || r.RetryAfter != 100*time.Millisecond || r.Remaining != 5 {
			t.Fatalf("cost 6 with 5 left: %+v, want refused for one interval", r)
		}
		if r := mustAllow(t, l, "c", p, 5); !r.Allowed || r.Remaining != 0 {
			t.Fatalf("cost 5 with 5 left: %+v", r)
		}
	})

	t.Run("CostAboveBurst", func(t *testing.T) {
		// No wait lets a cost above the burst through: that is no decision
		// but a bad request, and it takes nothing from the bucket.
		clk := newFakeClock()
		l := NewLocal()
		l.Now = clk.Now
		for range 3 {
			if r, err := l.Allow(context.Background(), "c", p, 21); apiperf.ErrorCode(err) != apiperf.EINVALID {
				t.Fatalf("cost 21 > burst 20: %+v, %v; want EINVALID", r, err)
			}
		}
		if r := mustAllow(t, l, "c", p, 20); !r.Allowed {
			t.Fatalf("cost == burst on a full bucket: %+v, want allowed", r)
		}
	})

	t.Run("UnevenInterval", func(t *testing.T) {
		// 3 per second: T rounds up to 333334µs, so the limiter is never
		// looser than written.
		q := apiperf.RatePolicy{Name: "q", Rate: 3, Period: time.Second, Burst: 1}
		clk := newFakeClock()
		l := NewLocal()
		l.Now = clk.Now
		mustAllow(t, l, "c", q, 1)
		if r := mustAllow(t, l, "c", q, 1); r.Allowed || r.RetryAfter != 333334*time.Microsecond {
			t.Fatalf("%+v, want RetryAfter 333334µs", r)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		l := NewLocal()
		for _, tc := range []struct {
			p    apiperf.RatePolicy
			cost int
		}{
			{p, 0}, {p, -1},
			{apiperf.RatePolicy{Rate: 0, Period: time.Second, Burst: 1}, 1},
			{apiperf.RatePolicy{Rate: 1, Period: 0, Burst: 1}, 1},
			{apiperf.RatePolicy{Rate: 1, Period: time.Second, Burst: 0}, 1},
			{apiperf.RatePolicy{Rate: 10, Period: time.Microsecond, Burst: 1}, 1},
		} {
			if _, err := l.Allow(context.Background(), "c", tc.p, tc.cost); apiperf.ErrorCode(err) != apiperf.EINVALID {
				t.Errorf("Allow(%+v, cost %d) error = %v, want EINVALID", tc.p, tc.cost, err)
			}
		}
	})

	t.Run("IdleKeysExpire", func(t *testing.T) {
		clk := newFakeClock()
		l := NewLocal()
		l.Now = clk.Now
		for i := range 1000 {
			mustAllow(t, l, string(rune('a'+i%26))+string(rune(i)), p, 1)
		}
		if n := l.len(); n != 1000 {
			t.Fatalf("holding %d keys, want 1000", n)
		}
		clk.Advance(sweepEvery + time.Second)
		for i := range 1000 { // new keys trigger each shard's sweep
			mustAllow(t, l, "new"+string(rune(i)), p, 1)
		}
		if n := l.len(); n != 1000 {
			t.Fatalf("holding %d keys after the old ones went idle, want only the 1000 new ones", n)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		// With a frozen clock, exactly Burst requests are allowed however
		// many goroutines ask at once.
		clk := newFakeClock()
		l := NewLocal()
		l.Now = clk.Now
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					if r, _ := l.Allow(context.Background(), "hot", p, 1); r.Allowed {
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if n := allowed.Load(); n != 20 {
			t.Fatalf("allowed %d of 800 concurrent requests, want exactly the burst (20)", n)
		}
	})
}

// TestLocal_MaxClients: past MaxClients, new clients share one bucket per
// policy, clients already kept keep theirs, memory stays at the cap, and
// once kept clients' buckets are full again new clients get their own.
func TestLocal_MaxClients(t *testing.T) {
	p := apiperf.RatePolicy{Name: "auth", Rate: 1, Period: time.Hour, Burst: 1}
	clk := newFakeClock()
	l := NewLocal()
	l.Now = clk.Now
	l.MaxClients = tableShards // one bucket per shard
	l.overflowN = 1            // one shared bucket, for exact counts
	const clients = 2000
	allowed := 0
	for i := range clients {
		if mustAllow(t, l, "flood"+strconv.Itoa(i), p, 1).Allowed {
			allowed++
		}
	}
	kept := l.len()
	if kept > tableShards {
		t.Fatalf("holding %d buckets, want at most MaxClients (%d)", kept, tableShards)
	}
	// Every kept client spent its own burst of 1; all the others shared
	// one bucket of burst 1.
	if allowed != kept+1 {
		t.Fatalf("allowed %d of %d one-request clients with %d kept, want %d: the clients over the cap are not limited together",
			allowed, clients, kept, kept+1)
	}
	if n := l.untracked.Load(); n != int64(clients-kept) {
		t.Fatalf("%d decisions on the shared bucket, want %d", n, clients-kept)
	}
	// A kept client is still decided on its own bucket: refused, its own
	// burst spent, not the shared one's.
	if mustAllow(t, l, "flood0", p, 1).Allowed {
		t.Fatal("a kept client was allowed past its own burst")
	}
	// The policy's window passes: every bucket is full again, idle, and
	// forgotten on the next sweep, so new clients have room once more.
	clk.Advance(time.Hour + sweepEvery)
	if !mustAllow(t, l, "later", p, 1).Allowed || l.untracked.Load() != int64(clients-kept) {
		t.Fatal("a new client after the flood's buckets went idle was not given a bucket of its own")
	}

	// No cap: every client is kept.
	open := NewLocal()
	open.MaxClients = -1
	open.Now = clk.Now
	for i := range clients {
		if !mustAllow(t, open, "c"+strconv.Itoa(i), p, 1).Allowed {
			t.Fatalf("client %d refused with no cap", i)
		}
	}
	if n := open.len(); n != clients {
		t.Fatalf("holding %d buckets with no cap, want %d", n, clients)
	}
}

// TestLocal_MaxClientsAhead: what the primary knew of one client's bucket
// (Fallback's ahead) refuses or allows that client, but it is not charged
// to the bucket it shares with every other client over the cap: one
// client that spent its burst in Redis must not spend everyone's here.
func TestLocal_MaxClientsAhead(t *testing.T) {
	p := apiperf.RatePolicy{Name: "auth", Rate: 10, Period: time.Minute, Burst: 10}
	l := fullLocal(t, 1)
	if n := l.len(); n != tableShards {
		t.Fatalf("holding %d buckets, want every shard full (%d)", n, tableShards)
	}
	step := (time.Minute / 10).Microseconds()
	// The primary knew this client one request short of its burst.
	r, _, err := l.allowAfter("spent", p, 1, 9*step)
	if err != nil || !r.Allowed {
		t.Fatalf("client with one request left: %+v, %v; want allowed", r, err)
	}
	// And now with its burst spent: refused, on its own knowledge.
	if r, _, _ := l.allowAfter("spent", p, 1, 10*step); r.Allowed {
		t.Fatal("client known to have spent its burst was allowed on the shared bucket")
	}
	// The shared bucket was charged one request, not the client's debt.
	allowed := 0
	for i := range 20 {
		if mustAllow(t, l, "other"+strconv.Itoa(i), p, 1).Allowed {
			allowed++
		}
	}
	if allowed != p.Burst-1 {
		t.Fatalf("other clients over the cap got %d of the shared burst, want %d", allowed, p.Burst-1)
	}
}

// TestLocal_MaxClientsFloodSpread: the clients over the cap share
// overflowBuckets buckets, not one, chosen by a seeded hash. A flood from
// 100 addresses spends the buckets it lands in, and most of 100 other new
// clients, landing elsewhere, are still allowed; memory stays at most
// overflowBuckets per policy.
func TestLocal_MaxClientsFloodSpread(t *testing.T) {
	p := apiperf.RatePolicy{Name: "auth", Rate: 1, Period: time.Hour, Burst: 1}
	l := fullLocal(t, 0)
	for i := range 100 {
		allowedOf(t, l, "flood"+strconv.Itoa(i), p, 100)
	}
	allowed := 0
	for i := range 100 {
		if mustAllow(t, l, "new"+strconv.Itoa(i), p, 1).Allowed {
			allowed++
		}
	}
	// About 85 expected: a new client is refused when the flood or an
	// earlier new client took its bucket (about 10% and 5%); with one
	// shared bucket, none would be.
	if allowed < 60 {
		t.Fatalf("%d of 100 new clients allowed after a flood from 100 addresses, want most of them", allowed)
	}
	for i := range 5000 {
		mustAllow(t, l, "more"+strconv.Itoa(i), p, 1)
	}
	perPolicy := map[string]int{}
	l.ovMu.Lock()
	for k := range l.overflow {
		perPolicy[k.name]++
	}
	l.ovMu.Unlock()
	for name, n := range perPolicy {
		if n > overflowBuckets {
			t.Fatalf("%d shared buckets for policy %s, want at most %d", n, name, overflowBuckets)
		}
	}
}

// fullLocal returns a Local on a frozen clock with one bucket per shard,
// every shard holding one still in use, and overflowN shared buckets per
// policy (0: overflowBuckets).
func fullLocal(t *testing.T, overflowN int) *Local {
	t.Helper()
	fill := apiperf.RatePolicy{Name: "fill", Rate: 1, Period: time.Hour, Burst: 1}
	l := NewLocal()
	l.Now = newFakeClock().Now
	l.MaxClients = tableShards
	l.overflowN = overflowN
	for i := range 2000 {
		mustAllow(t, l, "fill"+strconv.Itoa(i), fill, 1)
	}
	return l
}
