package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/trace"
)

// NewClient connects to the Redis named by a redis:// or rediss:// URL
// and returns a client suited to NewRedis and shareable with
// other packages.
//
// With clientCache the client asks Redis for CLIENT TRACKING, so DoCache
// serves hot keys from process memory. Some managed Redis deployments refuse
// it; then NewClient logs why and connects again without client-side
// caching, which costs a round trip per hit and changes nothing else.
// clientCache false skips the attempt.
//
// With client-side caching the client also reports Redis's invalidation
// pushes to the caches NewRedis builds on it, which then keep their hottest
// values in a plain map in front of rueidis's cache (see near).
//
// The client uses one connection per Redis node (rueidis pipelines on it):
// that is what lets Invalidate wait until the invalidation push for a key has
// been applied locally, which several connections would not guarantee.
func NewClient(redisURL string, clientCache bool, logger *slog.Logger) (rueidis.Client, error) {
	return NewTracedClient(redisURL, clientCache, logger, nil)
}

// NewTracedClient is NewClient with every Redis command a client span
// (db.system "redis", the command's name) under tp (see tracedClient).
// A nil tp traces nothing and adds nothing to a call.
func NewTracedClient(redisURL string, clientCache bool, logger *slog.Logger, tp trace.TracerProvider) (rueidis.Client, error) {
	if logger == nil {
		logger = slog.Default()
	}
	opt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		// url.Error repeats the URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cache: not a redis:// or rediss:// URL: %w", err)
	}
	opt.PipelineMultiplex = -1
	opt.DisableCache = !clientCache
	pushes := &invalidations{}
	if clientCache {
		opt.OnInvalidations = pushes.notify
	}
	c, err := rueidis.NewClient(opt)
	if err != nil && clientCache && errors.Is(err, rueidis.ErrNoCache) {
		logger.Warn("cache: Redis refused client-side caching (CLIENT TRACKING, RESP3); "+
			"continuing without it, so every cache hit is a round trip to Redis", "err", err)
		opt.DisableCache = true
		opt.OnInvalidations = nil
		c, err = rueidis.NewClient(opt)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: connect to Redis %v: %w", opt.InitAddress, err)
	}
	if tp != nil {
		c = newTracedClient(c, tp, opt.InitAddress)
	}
	if opt.OnInvalidations != nil {
		return &trackedClient{Client: c, pushes: pushes}, nil
	}
	return c, nil
}

// ClientSideCaching reports whether c is a client NewClient made with
// client-side caching in effect (asked for, and not refused by Redis).
func ClientSideCaching(c rueidis.Client) bool {
	_, ok := c.(*trackedClient)
	return ok
}
