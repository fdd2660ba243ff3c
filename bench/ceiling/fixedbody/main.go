// Command fixedbody is the throughput ceiling of the cache hit itself: the
// same server build with cache and limiter disabled, returning a fixed
// body. It runs api-perf's own server package (router, request ids,
// metrics, ETags, panic recovery, connection timeouts) with a cache that
// hands back one constant body without any lookup, and no rate limiter.
// Against it, the warm GET /products/{id} ratio is the cost of the cache hit
// (and of the limiter, when that is on) and nothing else; bench/ceiling/static
// is the stricter ceiling that has none of the server around it either.
//
// Environment: HTTP_ADDR (default 127.0.0.1:18093), STATIC_BODY (the body),
// and HTTP_READ_TIMEOUT, HTTP_WRITE_TIMEOUT, HTTP_IDLE_TIMEOUT as api-perf
// reads them (Go durations; 0 turns one off).
package main

import (
	"context"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/server"
)

const defaultBody = `{"id":1,"name":"widget","description":"seeded by the benchmark harness","price":19.99,` +
	`"stock":1000000,"version":1,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`

// fixed is an apiperf.Cache whose every key holds the same body.
type fixed []byte

func (f fixed) Get(context.Context, string, apiperf.LoadFunc) ([]byte, error) {
	return f, nil
}

func (fixed) Invalidate(context.Context, ...string) error { return nil }

func main() {
	srv, err := server.New(server.Config{
		Cache:        fixed(getenv("STATIC_BODY", defaultBody)),
		Logger:       slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer:   prometheus.NewRegistry(),
		ReadTimeout:  timeout("HTTP_READ_TIMEOUT"),
		WriteTimeout: timeout("HTTP_WRITE_TIMEOUT"),
		IdleTimeout:  timeout("HTTP_IDLE_TIMEOUT"),
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", getenv("HTTP_ADDR", "127.0.0.1:18093"))
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(ln))
}

// timeout reads a duration the way api-perf does: unset keeps the server's
// default, 0 turns the timeout off (server.Config takes a negative value
// for that).
func timeout(name string) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	if d == 0 {
		return -1
	}
	return d
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
