// Command static is the throughput ceiling of a cached product read: a
// fasthttp server that answers every request with the same product JSON
// body and does no I/O. api-perf's warm GET /products/{id} is measured
// against it.
//
// Environment: HTTP_ADDR (default 127.0.0.1:18090) and STATIC_BODY (the
// body to serve; default a typical product).
package main

import (
	"log"
	"os"

	"github.com/valyala/fasthttp"
)

const defaultBody = `{"id":1,"name":"widget","description":"seeded by the benchmark harness","price":19.99,` +
	`"stock":1000000,"version":1,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`

func main() {
	body := []byte(getenv("STATIC_BODY", defaultBody))
	s := &fasthttp.Server{
		Name: "static",
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		},
	}
	log.Fatal(s.ListenAndServe(getenv("HTTP_ADDR", "127.0.0.1:18090")))
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
