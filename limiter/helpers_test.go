package limiter

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"
)

// redisAddr is the shared Redis the tests expect on this machine.
const redisAddr = "127.0.0.1:6379"

// verifyNoLeaks checks, after every cleanup of the test has run (the first
// registered cleanup runs last), that the test left no goroutine behind.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	// A rueidis cluster client closes connections dropped from the slot map
	// five seconds later in a goroutine of its own, even after Close; it
	// ends by itself and holds nothing of ours.
	rueidisDelayedClose := goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2")
	// After a MOVED reply it refreshes the slot map once, after a pause,
	// in another goroutine of its own that also ends by itself.
	rueidisDelayedRefresh := goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1")
	t.Cleanup(func() { goleak.VerifyNone(t, ignore, rueidisDelayedClose, rueidisDelayedRefresh) })
}

// MustClient returns a rueidis client for addrs, closed at the end of the
// test. Client-side caching is off: the limiter never reads through it.
func MustClient(tb testing.TB, addrs ...string) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  addrs,
		DisableCache: true,
	})
	if err != nil {
		tb.Fatalf("connecting to Redis at %v (the tests need a real Redis): %v", addrs, err)
	}
	tb.Cleanup(c.Close)
	return c
}

var prefixSeq atomic.Int64

// MustPrefix returns a key prefix unique to this test run and deletes every
// key under it when the test ends.
func MustPrefix(tb testing.TB, c rueidis.Client) string {
	tb.Helper()
	prefix := fmt.Sprintf("apiperf:test:%d:%d:", time.Now().UnixNano(), prefixSeq.Add(1))
	tb.Cleanup(func() { deleteKeys(tb, c, prefix) })
	return prefix
}

// deleteKeys removes every key starting with prefix, on every node.
func deleteKeys(tb testing.TB, c rueidis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range c.Nodes() {
		var cursor uint64
		for {
			e, err := n.Do(ctx, n.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				break // a node that is already gone holds nothing to clean
			}
			for _, k := range e.Elements {
				n.Do(ctx, n.B().Del().Key(k).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
}

// newRedis is NewRedis for a test, which fails on its error.
func newRedis(tb testing.TB, c rueidis.Client, opts RedisOptions) *Redis {
	tb.Helper()
	r, err := NewRedis(c, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// newFallback is NewFallback for a test, which fails on its error.
func newFallback(tb testing.TB, primary Limiter, opts FallbackOptions) *Fallback {
	tb.Helper()
	f, err := NewFallback(primary, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}
