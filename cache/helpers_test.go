package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"go.uber.org/goleak"
)

// testRedisAddr is the shared Redis the tests use (TEST_REDIS_ADDR
// overrides 127.0.0.1:6379); every test writes under its own random prefix
// and deletes what it wrote.
var testRedisAddr = testenv.RedisAddr()

// verifyNoLeaks checks, once the test and its cleanups have closed
// everything they opened, that no goroutine of the cache or of rueidis is
// left running. Call it first, so that its cleanup runs last.
//
// One rueidis goroutine is ignored: when a client finds a standalone Redis
// where it first probed for a cluster, rueidis leaves a topology refresh
// asleep for a random delay of up to about a second; it wakes on the closed
// client and ends by itself.
//
// A second is ignored too: a cluster client (TestRedisCluster_Cache) closes
// the connections dropped from its slot map five seconds later in a
// goroutine of its own, even after Close; it also ends by itself, possibly
// during a later test.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		goleak.VerifyNone(t,
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))
	})
}

// testPrefix returns a prefix no other test run uses.
func testPrefix(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "apiperf-test:" + hex.EncodeToString(b[:]) + ":"
}

// MustNewClient connects to addr like the server does. It fails the test
// when Redis is not there: these tests exist to run against a real one.
func MustNewClient(tb testing.TB, addr string, clientCache bool) rueidis.Client {
	tb.Helper()
	c, err := NewClient("redis://"+addr, clientCache, quietLogger())
	if err != nil {
		tb.Fatalf("Redis at %s is required for this test: %v", addr, err)
	}
	return c
}

// deleteByPrefix removes every key a test wrote under prefix.
func deleteByPrefix(tb testing.TB, c rueidis.Client, prefix string) {
	tb.Helper()
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Errorf("clean up %s*: %v", prefix, err)
			return
		}
		for _, k := range e.Elements {
			c.Do(ctx, c.B().Del().Key(k).Build())
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// replicas is a set of Redis caches sharing one Redis, each with its own
// client (its own connection and client-side cache), as separate server
// replicas would have.
type replicas struct {
	caches  []*Redis
	clients []rueidis.Client
	regs    []*prometheus.Registry
}

// MustOpenReplicas opens n Redis caches with their own clients. Everything is
// closed and the keys deleted when the test ends.
func MustOpenReplicas(tb testing.TB, n int, clientCache bool, opts Options) *replicas {
	tb.Helper()
	if opts.Prefix == "" {
		opts.Prefix = testPrefix(tb)
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.Timeout == 0 {
		// Generous: the machine running the tests may be busy, and a Redis
		// timeout turns a hit into a load, which these tests count. The
		// timeout path has its own test with a frozen Redis.
		opts.Timeout = 2 * time.Second
	}
	rs := &replicas{}
	for i := 0; i < n; i++ {
		c := MustNewClient(tb, testRedisAddr, clientCache)
		o := opts
		reg := prometheus.NewRegistry()
		o.Registerer = reg
		r, err := NewRedis(c, o)
		if err != nil {
			c.Close()
			tb.Fatal(err)
		}
		rs.caches = append(rs.caches, r)
		rs.clients = append(rs.clients, c)
		rs.regs = append(rs.regs, reg)
	}
	tb.Cleanup(func() {
		deleteByPrefix(tb, rs.clients[0], opts.Prefix)
		rs.close()
	})
	return rs
}

// close closes the caches and their clients; it may run twice.
func (rs *replicas) close() {
	for i, r := range rs.caches {
		r.Close()
		rs.clients[i].Close()
	}
	rs.caches, rs.clients = nil, nil
}

// counter returns the value of a cache counter with the given label value
// (empty for the unlabelled one) in reg.
func counter(tb testing.TB, reg *prometheus.Registry, name, label string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" && len(m.GetLabel()) == 0 {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// quietLogger drops log records; tests that check logs use a captureLogger.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// captureLogger returns a logger writing text records into the buffer.
func captureLogger() (*slog.Logger, *testenv.Buffer) {
	b := &testenv.Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// newLocal is NewLocal for a test, which fails on its error.
func newLocal(tb testing.TB, opts Options) *Local {
	tb.Helper()
	l, err := NewLocal(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}
