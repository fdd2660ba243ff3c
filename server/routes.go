package server

import (
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

// apiPrefix is the canonical prefix; every API route also answers at the
// root so that the old service's clients keep working.
const apiPrefix = "/api/v1"

func (s *Server) routesSetup() {
	r := router.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	s.router = r

	for _, prefix := range []string{apiPrefix, ""} {
		s.api(fasthttp.MethodPost, prefix+"/products", s.createProduct)
		s.api(fasthttp.MethodGet, prefix+"/products", s.listProducts)
		s.api(fasthttp.MethodGet, prefix+"/products/{id}", s.getProduct)
		s.api(fasthttp.MethodPut, prefix+"/products/{id}", s.replaceProduct)
		s.api(fasthttp.MethodPatch, prefix+"/products/{id}", s.patchProduct)
		s.api(fasthttp.MethodDelete, prefix+"/products/{id}", s.deleteProduct)
		s.apiKeyed(fasthttp.MethodPost, prefix+"/orders", s.createOrder)
		s.api(fasthttp.MethodGet, prefix+"/orders", s.listOrders)
		s.api(fasthttp.MethodGet, prefix+"/orders/{id}", s.getOrder)
		s.api(fasthttp.MethodPatch, prefix+"/orders/{id}", s.patchOrder)
		s.api(fasthttp.MethodDelete, prefix+"/orders/{id}", s.deleteOrder)
	}
	s.plain(fasthttp.MethodGet, "/healthz", s.healthz)
	s.plain(fasthttp.MethodGet, "/livez", s.healthz)
	s.plain(fasthttp.MethodGet, "/readyz", s.readyz)
	s.plain(fasthttp.MethodGet, "/openapi.json", s.openAPI)
	s.plain(fasthttp.MethodGet, "/docs", s.swaggerUI)
	s.plain(fasthttp.MethodGet, "/redoc", s.redoc)
	if s.cfg.Metrics != nil {
		s.plain(fasthttp.MethodGet, "/metrics", s.cfg.Metrics)
	}

	unmatched := s.metrics.route("unmatched", "any")
	r.NotFound = func(ctx *fasthttp.RequestCtx) {
		start := requestStart(ctx)
		s.problem(ctx, fasthttp.StatusNotFound, "no route matches "+string(ctx.Method())+" "+string(ctx.Path()))
		unmatched.observe(fasthttp.StatusNotFound, time.Since(start))
	}
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		start := requestStart(ctx)
		s.problem(ctx, fasthttp.StatusMethodNotAllowed, "method "+string(ctx.Method())+" is not allowed here")
		unmatched.observe(fasthttp.StatusMethodNotAllowed, time.Since(start))
	}
}

// api registers an API route: metrics, API-key check for writes, rate limit.
func (s *Server) api(method, path string, h fasthttp.RequestHandler) {
	s.apiRoute(method, path, h, nil)
}

// apiKeyed is api for a handler that needs to know which API key the
// request authenticated with: it gets the index keyIndex found, so that
// the token is hashed once per request.
func (s *Server) apiKeyed(method, path string, h func(ctx *fasthttp.RequestCtx, key int)) {
	s.apiRoute(method, path, nil, h)
}

// apiRoute registers h, or keyed when h is nil.
func (s *Server) apiRoute(method, path string, h fasthttp.RequestHandler, keyed func(*fasthttp.RequestCtx, int)) {
	class := classRead
	if method != fasthttp.MethodGet && method != fasthttp.MethodHead {
		class = classWrite
	}
	limit := s.limits[class]
	rm := s.metrics.route(path, method)
	s.routes = append(s.routes, Route{method, path})
	spanName := method + " " + path
	s.router.Handle(method, path, func(ctx *fasthttp.RequestCtx) {
		start := requestStart(ctx)
		defer func() { rm.observe(ctx.Response.StatusCode(), time.Since(start)) }()
		if s.tracer != nil {
			s.nameSpan(ctx, spanName, path)
		}
		// A configured key names its holder; anything else (no token, or
		// a token that is no key) is the client's address.
		key := s.keyIndex(ctx)
		if key == notAKey && class == classRead && !s.chargeAuthFailure(ctx) {
			// Reads need no key, but a token that is no key is still a
			// failed authentication: otherwise reads would test guessed
			// keys as fast as the read policy allows (a key's RateLimit
			// state differs from its address's).
			return
		}
		if limit != nil && !s.rateLimit(ctx, limit, key) {
			return
		}
		if class == classWrite && len(s.keys) > 0 && key < 0 {
			s.authFailed(ctx)
			return
		}
		if keyed != nil {
			keyed(ctx, key)
			return
		}
		h(ctx)
	})
}

// plain registers an operational route: metrics only, never limited.
func (s *Server) plain(method, path string, h fasthttp.RequestHandler) {
	rm := s.metrics.route(path, method)
	s.routes = append(s.routes, Route{method, path})
	spanName := method + " " + path
	s.router.Handle(method, path, func(ctx *fasthttp.RequestCtx) {
		start := requestStart(ctx)
		if s.tracer != nil {
			s.nameSpan(ctx, spanName, path)
		}
		h(ctx)
		rm.observe(ctx.Response.StatusCode(), time.Since(start))
	})
}
