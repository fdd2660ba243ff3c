package server_test

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/server"
)

var remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// benchServer is a server over the in-memory store with n products.
func benchServer(tb testing.TB, n int, cached bool) (fasthttp.RequestHandler, *memStore) {
	tb.Helper()
	st := newMemStore()
	for i := 0; i < n; i++ {
		if _, err := st.CreateProduct(context.Background(), apiperf.ProductInput{Name: "Product " + strconv.Itoa(i), Price: 9999, Stock: 1 << 40}); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := server.Config{Products: st, Orders: st, AccessLog: "off"}
	if cached {
		cfg.Cache = &hitCache{m: map[string][]byte{}}
	}
	return server.New(cfg).Handler(), st
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

func benchRoute(b *testing.B, h fasthttp.RequestHandler, method, uri string, body []byte, want int) {
	b.ReportAllocs()
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
	h, _ := benchServer(b, 100, true)
	benchRoute(b, h, "GET", "/products/42", nil, 200)
}

func BenchmarkServer_GetProductUncached(b *testing.B) {
	h, _ := benchServer(b, 100, false)
	benchRoute(b, h, "GET", "/products/42", nil, 200)
}

func BenchmarkServer_GetProductNotModified(b *testing.B) {
	h, _ := benchServer(b, 100, true)
	ctx := newCtx()
	request(ctx, "GET", "/products/42", nil)
	h(ctx)
	etag := string(ctx.Response.Header.Peek("ETag"))
	b.ReportAllocs()
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
	h, _ := benchServer(b, 100, true)
	benchRoute(b, h, "GET", "/products?limit=20", nil, 200)
}

func BenchmarkServer_CreateOrder(b *testing.B) {
	h, _ := benchServer(b, 1, true)
	benchRoute(b, h, "POST", "/orders", []byte(`{"product_id":1,"quantity":1}`), 201)
}

// TestGetProduct_Allocs bounds the allocations of the hottest route with a
// warm cache, the cache's own excluded: what remains is the router's path
// parameter (the string and its boxing into the user value). The cache key
// is that same string and the loader is made once, so anything more is a
// regression.
func TestGetProduct_Allocs(t *testing.T) {
	h, _ := benchServer(t, 10, true)
	ctx := newCtx()
	request(ctx, "GET", "/products/7", nil)
	h(ctx)
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
