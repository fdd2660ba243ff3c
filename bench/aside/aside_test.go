// Package aside measures a hot read through rueidisaside, the cache-aside
// client in the rueidis repository, against api-perf's cache on the same
// Redis. It is its own module so that rueidisaside never becomes a
// dependency of the server.
//
//	cd bench/aside && go test -run '^$' -bench . -benchmem
//
// TEST_REDIS_ADDR overrides 127.0.0.1:6379.
package aside

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidisaside"

	"github.com/api-perf/api-perf/cache"
)

var body = []byte(`{"id":1,"name":"widget","description":"seeded by the benchmark harness","price":19.99,` +
	`"stock":1000000,"version":1,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`)

func redisAddr() string {
	if a := os.Getenv("TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// prefix is unique per run, so that parallel runs never share keys.
func prefix(b *testing.B) string {
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		b.Fatal(err)
	}
	return "apiperf-bench-aside:" + hex.EncodeToString(r[:]) + ":"
}

// BenchmarkHit_rueidisaside: Get of a key already in the client-side cache.
func BenchmarkHit_rueidisaside(b *testing.B) {
	c, err := rueidisaside.NewClient(rueidisaside.ClientOption{
		ClientOption: rueidis.ClientOption{InitAddress: []string{redisAddr()}}})
	if err != nil {
		b.Fatalf("Redis at %s is required: %v", redisAddr(), err)
	}
	defer c.Close()
	ctx := context.Background()
	key := prefix(b) + "{1}"
	defer c.Del(ctx, key) //nolint:errcheck
	load := func(context.Context, string) (string, error) { return string(body), nil }
	for range 3 { // load, then fill the client-side cache
		if _, err := c.Get(ctx, time.Minute, key, load); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, time.Minute, key, load); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHit_apiperf: the same with api-perf's cache (near map in front
// of rueidis DoCache).
func BenchmarkHit_apiperf(b *testing.B) {
	c, err := cache.NewClient("redis://"+redisAddr(), true, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatalf("Redis at %s is required: %v", redisAddr(), err)
	}
	defer c.Close()
	r, err := cache.NewRedis(c, cache.Options{Prefix: prefix(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	defer r.Invalidate(ctx, "1") //nolint:errcheck
	load := func(context.Context, string) ([]byte, error) { return body, nil }
	for range 3 {
		if _, err := r.Get(ctx, "1", load); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Get(ctx, "1", load); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
