package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

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
	mu      sync.Mutex // guards closers against a late connection
	closers []func()
	closed  bool
	// clientCache reports whether Redis reads use client-side caching.
	clientCache bool
}

func (b *backends) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

// addCloser registers close, or runs it at once when b is already closed
// (a connection that came up during shutdown).
func (b *backends) addCloser(close func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close()
		return
	}
	b.closers = append(b.closers, close)
}

// openBackends opens the cache and the limiter; with tp, every Redis
// command is a span.
func openBackends(ctx context.Context, cfg config, logger *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (*backends, error) {
	b := &backends{}
	copts := cacheOptions(cfg, logger, reg)
	if cfg.RedisURL == "" {
		c, err := cache.NewLocal(copts)
		if err != nil {
			return nil, err
		}
		b.cache, b.closers = c, append(b.closers, c.Close)
		// The in-process limiter never fails; the Fallback around it only
		// counts decisions, so embedded mode has the same metrics.
		local := limiter.NewLocal()
		local.MaxClients = maxClients(cfg.RateLimitMaxClients)
		f, err := limiter.NewFallback(local, limiter.FallbackOptions{Logger: logger, Registerer: reg})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("rate limiter: %w", err)
		}
		b.limiter, b.closers = f, append(b.closers, f.Close)
	} else {
		client, err := cache.NewTracedClient(cfg.RedisURL, cfg.RedisClientCache, logger, tp)
		switch {
		case err == nil:
			b.addCloser(client.Close)
			b.clientCache = cache.ClientSideCaching(client)
			if cfg.RedisClientCache && !b.clientCache {
				logger.Warn("set REDIS_CLIENT_CACHE=off to skip the attempt at client-side caching that Redis refused")
			}
			b.checks = append(b.checks, redisCheck(cfg, redisPinger{client}))
			c, l, err := redisBackends(ctx, cfg, client, logger, reg)
			if err != nil {
				b.Close()
				return nil, err
			}
			b.cache, b.limiter = c, l
			b.addCloser(func() { closeAll(c, l) })
		case isConfigError(err):
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		default:
			// Redis is down or restarting: the service runs without it
			// (reads from the database, limits in process), so it starts
			// without it and connects when Redis answers, rather than
			// crash-looping every new replica for the length of the outage.
			logger.Warn("Redis unreachable at start: serving without it (reads from the database, rate limits "+
				"in process, or 503 with RATE_LIMIT_FAILURE=closed) and connecting in the background", "error", err)
			p, err := newPendingRedis(cfg, logger, reg, tp)
			if err != nil {
				return nil, err
			}
			b.cache, b.limiter = p, p
			b.checks = append(b.checks, redisCheck(cfg, p))
			b.addCloser(p.closeFallback)
			go p.connect(ctx, b)
		}
	}
	if !cfg.CacheEnabled {
		b.cache = nil
	}
	return b, nil
}

func cacheOptions(cfg config, logger *slog.Logger, reg prometheus.Registerer) cache.Options {
	return cache.Options{Prefix: cfg.RedisKeyPrefix + "product:", TTL: cfg.CacheTTL, Timeout: cfg.CacheTimeout, Logger: logger, Registerer: reg}
}

// redisCheck is the readiness check of Redis: optional while the limiter
// fails open, as the service then answers everything without Redis, and
// required when it fails closed, as every limited request then gets 503.
func redisCheck(cfg config, p apiperf.Pinger) server.Check {
	return server.Check{Name: "redis", Pinger: p, Optional: !cfg.FailClosed}
}

// redisBackends builds the Redis cache and the Redis limiter (under its
// in-process fallback) on a connected client.
func redisBackends(ctx context.Context, cfg config, client rueidis.Client, logger *slog.Logger, reg prometheus.Registerer) (*cache.Redis, *limiter.Fallback, error) {
	c, err := cache.NewRedis(client, cacheOptions(cfg, logger, reg))
	if err != nil {
		return nil, nil, err
	}
	rl, err := limiter.NewRedis(client, limiter.RedisOptions{Prefix: cfg.RedisKeyPrefix + "rl:", Debt: cfg.RateLimitDebt, DebtDelay: cfg.RateLimitDebtDelay, MaxClients: maxClients(cfg.RateLimitMaxClients), Registerer: reg})
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("rate limiter: %w", err)
	}
	// Loading the script now keeps the first decisions from paying
	// NOSCRIPT + EVAL under the limiter's few-millisecond deadline.
	if err := rl.Preload(ctx); err != nil {
		logger.Warn("rate-limit script not preloaded; it loads on first use", "error", err)
	}
	l, err := newFallback(cfg, rl, logger, reg)
	if err != nil {
		rl.Close()
		c.Close()
		return nil, nil, err
	}
	return c, l, nil
}

func newFallback(cfg config, primary limiter.Limiter, logger *slog.Logger, reg prometheus.Registerer) (*limiter.Fallback, error) {
	failure := limiter.FailOpen
	if cfg.FailClosed {
		failure = limiter.FailClosed
	}
	f, err := limiter.NewFallback(primary, limiter.FallbackOptions{
		Timeout: cfg.RedisTimeout, Failure: failure, Logger: logger, Registerer: reg,
		MaxClients: maxClients(cfg.RateLimitMaxClients),
	})
	if err != nil {
		return nil, fmt.Errorf("rate limiter: %w", err)
	}
	return f, nil
}

func closeAll(c *cache.Redis, l *limiter.Fallback) {
	l.Close()
	c.Close()
}

// isConfigError tells a REDIS_URL that can never work (a malformed URL, a
// refused password, a TLS mismatch) from a Redis that does not answer yet:
// a refused or timed-out connection, or a name that does not resolve yet.
func isConfigError(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	return !errors.As(err, &oe) && !errors.As(err, &de) && !errors.Is(err, context.DeadlineExceeded)
}

// redisPinger is the readiness check of the Redis connection.
type redisPinger struct{ c rueidis.Client }

func (p redisPinger) Ping(ctx context.Context) error {
	return p.c.Do(ctx, p.c.B().Ping().Build()).Error()
}

// pendingRedis stands for the Redis cache and limiter until Redis first
// answers: reads go to the database, and the limiter is a Fallback whose
// primary always fails, so that it decides in process (or answers 503 when
// failing closed) with the usual metrics and logs. Once connected, both
// switch to Redis for good.
type pendingRedis struct {
	cfg      config
	log      *slog.Logger
	reg      prometheus.Registerer
	tp       trace.TracerProvider
	fallback *limiter.Fallback
	cache    atomic.Pointer[cache.Redis]
	limiter  atomic.Pointer[limiter.Fallback]
	ping     atomic.Pointer[redisPinger]
}

var (
	_ apiperf.Cache       = (*pendingRedis)(nil)
	_ apiperf.RateLimiter = (*pendingRedis)(nil)
	_ apiperf.Pinger      = (*pendingRedis)(nil)
)

var errRedisUnreachable = errors.New("no answer from Redis since start-up")

func newPendingRedis(cfg config, logger *slog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (*pendingRedis, error) {
	f, err := newFallback(cfg, unreachable{}, logger, reg)
	if err != nil {
		return nil, err
	}
	return &pendingRedis{cfg: cfg, log: logger, reg: reg, tp: tp, fallback: f}, nil
}

func (p *pendingRedis) Get(ctx context.Context, key string, load apiperf.LoadFunc) ([]byte, error) {
	if c := p.cache.Load(); c != nil {
		return c.Get(ctx, key, load)
	}
	return load(ctx, key)
}

func (p *pendingRedis) Invalidate(ctx context.Context, keys ...string) error {
	if c := p.cache.Load(); c != nil {
		return c.Invalidate(ctx, keys...)
	}
	return nil
}

func (p *pendingRedis) Allow(ctx context.Context, key string, policy apiperf.RatePolicy, cost int) (apiperf.RateDecision, error) {
	if l := p.limiter.Load(); l != nil {
		return l.Allow(ctx, key, policy, cost)
	}
	return p.fallback.Allow(ctx, key, policy, cost)
}

// Ping is the readiness check: it fails until connected, then pings Redis.
func (p *pendingRedis) Ping(ctx context.Context) error {
	r := p.ping.Load()
	if r == nil {
		return errRedisUnreachable
	}
	return r.Ping(ctx)
}

func (p *pendingRedis) closeFallback() { p.fallback.Close() }

// connect dials Redis until it answers or ctx ends, backing off from one
// second to thirty, then switches the cache and the limiter over.
func (p *pendingRedis) connect(ctx context.Context, b *backends) {
	wait := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
		client, err := cache.NewTracedClient(p.cfg.RedisURL, p.cfg.RedisClientCache, p.log, p.tp)
		if err != nil {
			p.log.Debug("Redis still unreachable", "error", err)
			continue
		}
		c, l, err := redisBackends(ctx, p.cfg, client, p.log, p.reg)
		if err != nil {
			p.log.Error("Redis answered, but its cache or limiter could not be built; serving without Redis", "error", err)
			client.Close()
			return
		}
		b.addCloser(client.Close)
		b.addCloser(func() { closeAll(c, l) })
		p.ping.Store(&redisPinger{client})
		p.limiter.Store(l)
		p.cache.Store(c)
		p.log.Info("Redis connected: cache and rate limits on Redis", "redis_client_cache", cache.ClientSideCaching(client))
		return
	}
}

// unreachable is the limiter primary while Redis has never answered.
type unreachable struct{}

func (unreachable) Allow(context.Context, string, apiperf.RatePolicy, int) (apiperf.RateDecision, error) {
	return apiperf.RateDecision{}, &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "rate limiter unavailable", Err: errRedisUnreachable}
}

func (unreachable) Close() {}

// maxClients maps RATE_LIMIT_MAX_CLIENTS, where 0 is no cap, onto
// RedisOptions.MaxClients and Local.MaxClients, where that is a negative
// number.
func maxClients(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
