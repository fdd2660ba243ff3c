package cache

import (
	"context"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// benchmarkGetHit measures parallel Gets of one hot key that is already
// cached, the shape of the hottest route (GET /products/{id}).
func benchmarkGetHit(b *testing.B, c Cache) {
	src := newSource(`{"id":1,"name":"hot product","price":19.99,"stock":7}`)
	load := apiperf.LoadFunc(src.load)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.Get(ctx, "product:1", load); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, err := c.Get(ctx, "product:1", load); err != nil || len(v) == 0 {
				b.Errorf("Get = %q, %v", v, err)
				return
			}
		}
	})
	b.StopTimer()
	if n := src.loads.Load(); n != 1 {
		b.Fatalf("load called %d times; the benchmark measured misses", n)
	}
}

// BenchmarkRedis_GetHit is a client-side hit: process memory, no network.
func BenchmarkRedis_GetHit(b *testing.B) {
	rs := MustOpenReplicas(b, 1, true, Options{})
	benchmarkGetHit(b, rs.caches[0])
}

// BenchmarkRedis_GetHitNoClientCache is the same hit without client-side
// caching (REDIS_CLIENT_CACHE=off): one loopback round trip per Get, with
// rueidis pipelining the parallel ones.
func BenchmarkRedis_GetHitNoClientCache(b *testing.B) {
	rs := MustOpenReplicas(b, 1, false, Options{})
	benchmarkGetHit(b, rs.caches[0])
}

// BenchmarkLocal_GetHit is the in-process cache of the embedded default.
func BenchmarkLocal_GetHit(b *testing.B) {
	l := newLocal(b, Options{})
	defer l.Close()
	benchmarkGetHit(b, l)
}

// BenchmarkRueidis_DoCacheHit is the baseline under BenchmarkRedis_GetHit:
// rueidis's own client-side hit for the same key, without this package.
func BenchmarkRueidis_DoCacheHit(b *testing.B) {
	rs := MustOpenReplicas(b, 1, true, Options{})
	r, c := rs.caches[0], rs.clients[0]
	ctx := context.Background()
	if _, err := r.Get(ctx, "product:1", newSource("v").load); err != nil {
		b.Fatal(err)
	}
	rkey := r.redisKey("product:1")
	for i := 0; i < 3; i++ {
		c.DoCache(ctx, c.B().Get().Key(rkey).Cache(), time.Minute)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if resp := c.DoCache(ctx, c.B().Get().Key(rkey).Cache(), time.Minute); !resp.IsCacheHit() {
				b.Error("not a client-side hit")
				return
			}
		}
	})
}
