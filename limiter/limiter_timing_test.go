package limiter

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// Policies for the benchmarks: far is a limit a busy client stays under
// for most of a run; def is the default read policy, which a single hot
// client blows through at once.
var (
	benchFar = apiperf.RatePolicy{Name: "read", Rate: 1000000, Period: time.Second, Burst: 1000000}
	benchDef = apiperf.RatePolicy{Name: "read", Rate: 100, Period: time.Second, Burst: 200}
)

// benchCrowd is the crowd scenario's policy: 1000/s, burst 1000.
var benchCrowd = apiperf.RatePolicy{Name: "read", Rate: 1000, Period: time.Second, Burst: 1000}

var benchKeys = func() []string {
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	return keys
}()

// runParallel runs l.Allow from every P, on one key or spread over many,
// and reports the share of allowed decisions.
func runParallel(b *testing.B, l Limiter, p apiperf.RatePolicy, manyKeys bool) {
	b.Helper()
	ctx := context.Background()
	var allowed, seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		n := int64(0)
		for pb.Next() {
			key := "hot"
			if manyKeys {
				i++
				key = benchKeys[i%len(benchKeys)]
			}
			r, err := l.Allow(ctx, key, p, 1)
			if err != nil {
				b.Error(err)
				return
			}
			if r.Allowed {
				n++
			}
		}
		allowed.Add(n)
	})
	b.ReportMetric(float64(allowed.Load())/float64(b.N), "allowed/op")
}

func BenchmarkLocal_Allow(b *testing.B) {
	b.Run("OneKey", func(b *testing.B) {
		l := NewLocal()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			l.Allow(ctx, "hot", benchFar, 1)
		}
	})
	b.Run("ParallelOneKey", func(b *testing.B) { runParallel(b, NewLocal(), benchFar, false) })
	b.Run("ParallelManyKeys", func(b *testing.B) { runParallel(b, NewLocal(), benchDef, true) })
}

// BenchmarkRedis_Allow is the plain mode: one EVALSHA per decision.
func BenchmarkRedis_Allow(b *testing.B) {
	r, _ := MustRedis(b, RedisOptions{Plain: true})
	if err := r.Preload(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Run("RoundTrip", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Allow(ctx, "hot", benchFar, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ParallelOneKey", func(b *testing.B) { runParallel(b, r, benchFar, false) })
	b.Run("ParallelManyKeys", func(b *testing.B) { runParallel(b, r, benchDef, true) })
}

// BenchmarkRedis_AllowBatched is the default mode. calls/op is the share
// of decisions that needed a script call.
func BenchmarkRedis_AllowBatched(b *testing.B) {
	for _, bc := range []struct {
		name string
		p    apiperf.RatePolicy
		many bool
		debt int
	}{
		{"ParallelOneKeyFar", benchFar, false, 0},
		{"ParallelOneKeyOverLimit", benchDef, false, 0},
		{"ParallelManyKeys", benchDef, true, 0},
		// The crowd: many clients far from a 1000/s limit, allowed on debt
		// and charged in coalesced background calls; a debt of 1 is
		// charged at once, as it reaches its cap.
		{"ParallelManyKeysDebt", benchCrowd, true, 1},
		// The default debt: charges wait for the once-a-second flush.
		{"ParallelManyKeysDebt8", benchCrowd, true, 8},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, _ := MustRedis(b, RedisOptions{Debt: bc.debt})
			if err := r.Preload(context.Background()); err != nil {
				b.Fatal(err)
			}
			if bc.debt > 0 {
				// Like a server's many connections: enough requests at
				// once for their calls to share round trips.
				b.SetParallelism(32)
			}
			runParallel(b, r, bc.p, bc.many)
			b.ReportMetric(float64(r.calls.Load())/float64(b.N), "calls/op")
			b.ReportMetric(float64(r.updates.Load())/float64(b.N), "updates/op")
		})
	}
}

// BenchmarkFallback_Allow is what the server runs: batched Redis behind
// the deadline and the in-process fallback, with metrics.
func BenchmarkFallback_Allow(b *testing.B) {
	r, _ := MustRedis(b, RedisOptions{})
	if err := r.Preload(context.Background()); err != nil {
		b.Fatal(err)
	}
	f := newFallback(b, r, FallbackOptions{})
	b.Run("ParallelOneKeyFar", func(b *testing.B) { runParallel(b, f, benchFar, false) })
	b.Run("ParallelOneKeyOverLimit", func(b *testing.B) { runParallel(b, f, benchDef, false) })
}
