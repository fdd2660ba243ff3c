package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/trace"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/cache"
	"github.com/api-perf/api-perf/limiter"
	"github.com/api-perf/api-perf/server"
)

// backends are the cache and the rate limiter: Redis-backed when REDIS_URL
// is set, in process otherwise. The server calls them directly.
type backends struct {
	cache   apiperf.Cache // nil when CACHE=off
	limiter apiperf.RateLimiter
	checks  []server.Check
	closers []func()
	// clientCache reports whether Redis reads use client-side caching.
	clientCache bool
}

func (b *backends) Close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// openBackends opens the cache and the limiter; with tp, every Redis
// command is a span.
func openBackends(ctx context.Context, cfg config, logger *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (*backends, error) {
	b := &backends{}
	copts := cache.Options{Prefix: cfg.RedisKeyPrefix + "product:", TTL: cfg.CacheTTL, Timeout: cfg.CacheTimeout, Logger: logger, Registerer: reg}
	if cfg.RedisURL == "" {
		c := cache.NewLocal(copts)
		b.cache, b.closers = c, append(b.closers, c.Close)
		// The in-process limiter never fails; the Fallback around it only
		// counts decisions, so embedded mode has the same metrics.
		f := limiter.NewFallback(limiter.NewLocal(), limiter.FallbackOptions{Logger: logger, Registerer: reg})
		b.limiter, b.closers = f, append(b.closers, f.Close)
	} else {
		client, err := cache.NewTracedClient(cfg.RedisURL, cfg.RedisClientCache, logger, tp)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		b.closers = append(b.closers, client.Close)
		b.clientCache = cache.ClientSideCaching(client)
		if cfg.RedisClientCache && !b.clientCache {
			logger.Warn("set REDIS_CLIENT_CACHE=off to skip the attempt at client-side caching that Redis refused")
		}
		b.checks = append(b.checks, server.Check{Name: "redis", Pinger: redisPinger{client}})
		c, err := cache.NewRedis(client, copts)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.cache, b.closers = c, append(b.closers, c.Close)
		failure := limiter.FailOpen
		if cfg.FailClosed {
			failure = limiter.FailClosed
		}
		rl := limiter.NewRedis(client, limiter.RedisOptions{Prefix: cfg.RedisKeyPrefix + "rl:", Debt: cfg.RateLimitDebt, Registerer: reg})
		// Loading the script now keeps the first decisions from paying
		// NOSCRIPT + EVAL under the limiter's few-millisecond deadline.
		if err := rl.Preload(ctx); err != nil {
			logger.Warn("rate-limit script not preloaded; it loads on first use", "error", err)
		}
		f := limiter.NewFallback(rl, limiter.FallbackOptions{
			Timeout: cfg.RedisTimeout, Failure: failure, Logger: logger, Registerer: reg,
		})
		b.limiter, b.closers = f, append(b.closers, f.Close)
	}
	if !cfg.CacheEnabled {
		b.cache = nil
	}
	return b, nil
}

// redisPinger is the readiness check of the Redis connection.
type redisPinger struct{ c rueidis.Client }

func (p redisPinger) Ping(ctx context.Context) error {
	return p.c.Do(ctx, p.c.B().Ping().Build()).Error()
}
