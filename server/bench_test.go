package server_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/limiter"
	"github.com/api-perf/api-perf/server"
)

var remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// benchServer is a handler over a SQLite store holding n products.
func benchServer(tb testing.TB, n int, cached bool) fasthttp.RequestHandler {
	tb.Helper()
	return newServer(tb, benchConfig(tb, n, cached)).Handler()
}

// limitedServer is benchServer with the in-process limiter in front of
// reads, under a policy no benchmark reaches, so that it measures the
// decision and its headers on every request.
func limitedServer(tb testing.TB, n int) fasthttp.RequestHandler {
	tb.Helper()
	cfg := benchConfig(tb, n, true)
	lim := limiter.NewLocal()
	tb.Cleanup(lim.Close)
	cfg.Limiter = lim
	cfg.ReadLimit = apiperf.RatePolicy{Name: "read", Rate: 1_000_000, Period: time.Second, Burst: 1_000_000_000}
	return newServer(tb, cfg).Handler()
}

func benchConfig(tb testing.TB, n int, cached bool) server.Config {
	tb.Helper()
	db := openStore(tb, "sqlite", "")
	for i := range n {
		in := apiperf.ProductInput{Name: "Product " + strconv.Itoa(i), Price: 9999, Stock: apiperf.MaxStock}
		if _, err := db.CreateProduct(context.Background(), in); err != nil {
			tb.Fatal(err)
		}
	}
	// A request budget, as in production: the call context it gives each
	// request must cost the cached read path nothing.
	cfg := server.Config{Products: db, Orders: db, AccessLog: "off", RequestTimeout: 10 * time.Second}
	if cached {
		cfg.Cache = &hitCache{m: map[string][]byte{}}
	}
	return cfg
}

// hitCache is an apiperf.Cache over a map, so that a benchmark of the hit path
// measures the handler, not a cache implementation.
type hitCache struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func (c *hitCache) Get(ctx context.Context, key string, load apiperf.LoadFunc) ([]byte, error) {
	c.mu.RLock()
	v, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	v, err := load(ctx, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[key] = v
	c.mu.Unlock()
	return v, nil
}

func (c *hitCache) Invalidate(_ context.Context, keys ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.m, k)
	}
	return nil
}

// request prepares ctx for one request, as fasthttp's connection loop does.
func request(ctx *fasthttp.RequestCtx, method, uri string, body []byte) {
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	if body != nil {
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.SetBody(body)
	}
}

func newCtx() *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, remote, nil)
	return &ctx
}

// benchRoute measures one route, after checking one answer of it against
// the document.
func benchRoute(b *testing.B, h fasthttp.RequestHandler, method, uri string, body []byte, want int) {
	ctx := newCtx()
	request(ctx, method, uri, body)
	h(ctx)
	if ctx.Response.StatusCode() != want {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	checkHandled(b, ctx)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := newCtx()
		for pb.Next() {
			request(ctx, method, uri, body)
			h(ctx)
			if ctx.Response.StatusCode() != want {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

func BenchmarkServer_GetProduct(b *testing.B) {
	h := benchServer(b, 100, true)
	benchRoute(b, h, "GET", "/products/42", nil, 200)
}

func BenchmarkServer_GetProductLimited(b *testing.B) {
	h := limitedServer(b, 100)
	benchRoute(b, h, "GET", "/products/42", nil, 200)
}

func BenchmarkServer_GetProductUncached(b *testing.B) {
	h := benchServer(b, 100, false)
	benchRoute(b, h, "GET", "/products/42", nil, 200)
}

func BenchmarkServer_GetProductNotModified(b *testing.B) {
	h := benchServer(b, 100, true)
	ctx := newCtx()
	request(ctx, "GET", "/products/42", nil)
	h(ctx)
	etag := string(ctx.Response.Header.Peek("ETag"))
	request(ctx, "GET", "/products/42", nil)
	ctx.Request.Header.Set("If-None-Match", etag)
	h(ctx)
	checkHandled(b, ctx)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := newCtx()
		for pb.Next() {
			request(ctx, "GET", "/products/42", nil)
			ctx.Request.Header.Set("If-None-Match", etag)
			h(ctx)
			if ctx.Response.StatusCode() != 304 {
				b.Fatal(ctx.Response.StatusCode())
			}
		}
	})
}

func BenchmarkServer_ListProducts(b *testing.B) {
	h := benchServer(b, 100, true)
	benchRoute(b, h, "GET", "/products?limit=20", nil, 200)
}

func BenchmarkServer_CreateOrder(b *testing.B) {
	h := benchServer(b, 1, true)
	benchRoute(b, h, "POST", "/orders", []byte(`{"product_id":1,"quantity":1}`), 201)
}

// TestGetProduct_Allocs bounds the allocations of the hottest route with a
// warm cache, the cache's own excluded: what remains is the router's path
// parameter (the string and its boxing into the user value). The cache key
// is that same string and the loader is made once, so anything more is a
// regression.
func TestGetProduct_Allocs(t *testing.T) {
	h := benchServer(t, 10, true)
	ctx := newCtx()
	request(ctx, "GET", "/products/7", nil)
	h(ctx)
	checkHandled(t, ctx)
	allocs := testing.AllocsPerRun(1000, func() {
		request(ctx, "GET", "/products/7", nil)
		h(ctx)
	})
	t.Logf("GET /products/{id}, warm cache: %.1f allocations per request", allocs)
	if allocs > maxGetProductAllocs {
		t.Fatalf("GET /products/{id} allocates %.1f times per request, want at most %d", allocs, maxGetProductAllocs)
	}
}

const maxGetProductAllocs = 2

// TestGetProduct_AllocsLimited is the same route with the in-process rate
// limiter on: the decision and its RateLimit headers add nothing but the
// client key the limiter is handed.
func TestGetProduct_AllocsLimited(t *testing.T) {
	h := limitedServer(t, 10)
	ctx := newCtx()
	request(ctx, "GET", "/products/7", nil)
	h(ctx)
	checkHandled(t, ctx)
	if len(ctx.Response.Header.Peek("RateLimit")) == 0 {
		t.Fatal("no RateLimit header: the limiter is not in front of the route")
	}
	allocs := testing.AllocsPerRun(1000, func() {
		request(ctx, "GET", "/products/7", nil)
		h(ctx)
	})
	t.Logf("GET /products/{id}, warm cache, limiter on: %.1f allocations per request", allocs)
	if allocs > maxGetProductAllocsLimited {
		t.Fatalf("GET /products/{id} with the limiter allocates %.1f times per request, want at most %d", allocs, maxGetProductAllocsLimited)
	}
}

const maxGetProductAllocsLimited = maxGetProductAllocs + 1
