package limiter

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valyala/fasthttp"
)

// BenchmarkHTTP_CachedGET puts the limiter where the server will: in front
// of a handler that answers a stored body, on a real loopback socket, and
// compares it with the same server without a limiter. The client shares
// the machine's cores with the server, as a load generator on the same
// host would; the ratio of the ns/op figures is what matters.
func BenchmarkHTTP_CachedGET(b *testing.B) {
	b.Run("Bare", func(b *testing.B) { benchHTTP(b, nil) })
	b.Run("Local", func(b *testing.B) { benchHTTP(b, NewLocal()) })
	b.Run("RedisBatched", func(b *testing.B) {
		r, _ := MustRedis(b, RedisOptions{})
		benchHTTP(b, newFallback(b, r, FallbackOptions{Logger: quiet}))
	})
	// One EVALSHA per request, without the fallback's deadline: under this
	// load most calls would miss 5ms and be decided in process instead.
	b.Run("RedisPlain", func(b *testing.B) {
		r, _ := MustRedis(b, RedisOptions{Plain: true})
		if err := r.Preload(context.Background()); err != nil {
			b.Fatal(err)
		}
		benchHTTP(b, r)
	})
}

// quiet drops the fallback's state-change lines, which a saturated
// two-core machine produces often enough to bury the results.
var quiet = slog.New(slog.DiscardHandler)

func benchHTTP(b *testing.B, l Limiter) {
	if r, ok := l.(*Fallback); ok {
		if rr, ok := r.primary.(*Redis); ok {
			if err := rr.Preload(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	body := []byte(`{"id":42,"name":"Widget","description":"A widget of the usual kind","price":19.99,"stock":120,"version":3,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-02T00:00:00Z"}`)
	p := benchFar
	handler := func(ctx *fasthttp.RequestCtx) {
		if l != nil {
			r, err := l.Allow(ctx, "127.0.0.1", p, 1)
			if err != nil {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				return
			}
			// The server renders the decision as headers; a number
			// appended per request stands for that work here.
			var buf [20]byte
			ctx.Response.Header.SetBytesV("RateLimit", strconv.AppendInt(buf[:0], int64(r.Remaining), 10))
			if !r.Allowed {
				ctx.SetStatusCode(fasthttp.StatusTooManyRequests)
				return
			}
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: handler}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Shutdown(); <-done }()

	c := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 64}
	url := "http://" + ln.Addr().String() + "/api/v1/products/42"
	b.SetParallelism(16)
	b.ReportAllocs()
	cpu := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != fasthttp.StatusOK {
				b.Errorf("status %d", resp.StatusCode())
				return
			}
		}
	})
	b.StopTimer()
	// Other work on a shared machine skews wall time; the CPU time this
	// process (server and client) spent per request is steadier.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	if f, ok := l.(*Fallback); ok {
		b.ReportMetric(counterSum(f.fallbacks)/float64(b.N), "fallbacks/op")
		l = f.primary
	}
	if r, ok := l.(*Redis); ok {
		b.ReportMetric(float64(r.calls.Load())/float64(b.N), "calls/op")
	}
	c.CloseIdleConnections()
}

// counterSum adds up every child of a counter vector.
func counterSum(v *prometheus.CounterVec) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(v)
	families, _ := reg.Gather()
	var sum float64
	for _, f := range families {
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
