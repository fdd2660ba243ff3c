package server

import (
	"context"
	"strconv"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Request spans. With Config.TracerProvider set, every request is a server
// span that continues the caller's W3C trace context (traceparent,
// tracestate) and is the parent of the request's store, cache and limiter
// calls. With none, s.tracer is nil and the only cost is that nil check.

// spanKey is the user-value key of a request's span.
type spanKey struct{}

// traceContext is the W3C Trace Context propagator: the trace a request
// joins comes from its traceparent and tracestate headers.
var traceContext propagation.TextMapPropagator = propagation.TraceContext{}

// startSpan starts the request's server span, named after the method until
// the router finds the route (see nameSpan). The attributes that cost a
// conversion (path, client address, user agent) are set only on a span the
// sampler records: with ratio sampling most requests are not, and they
// should pay no more than the sampling decision.
func (s *Server) startSpan(ctx *fasthttp.RequestCtx) trace.Span {
	parent := traceContext.Extract(context.Background(), headerCarrier{&ctx.Request.Header})
	method := knownMethod(ctx.Method())
	name := method
	if method == "_OTHER" {
		name = "HTTP"
	}
	_, span := s.tracer.Start(parent, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(requestStart(ctx)))
	if span.IsRecording() {
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(method),
			semconv.URLPath(string(ctx.Path())),
			semconv.ClientAddress(s.clientIP(ctx).String()),
		)
		if method == "_OTHER" {
			span.SetAttributes(semconv.HTTPRequestMethodOriginal(string(ctx.Method())))
		}
		if ua := ctx.Request.Header.UserAgent(); len(ua) > 0 {
			span.SetAttributes(semconv.UserAgentOriginal(string(ua)))
		}
	}
	ctx.SetUserValue(spanKey{}, span)
	return span
}

// endSpan records the response's status on span and ends it; a 5xx is an
// error of the server.
func endSpan(ctx *fasthttp.RequestCtx, span trace.Span) {
	if !span.IsRecording() {
		span.End()
		return
	}
	status := ctx.Response.StatusCode()
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		span.SetStatus(codes.Error, "")
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
	}
	span.End()
}

// requestSpan is the span of the request ctx, or nil.
func requestSpan(ctx *fasthttp.RequestCtx) trace.Span {
	span, _ := ctx.UserValue(spanKey{}).(trace.Span)
	return span
}

// nameSpan names the request's span after its route, once the router has
// matched one: "GET /api/v1/products/{id}".
func (s *Server) nameSpan(ctx *fasthttp.RequestCtx, name, route string) {
	if span := requestSpan(ctx); span != nil && span.IsRecording() {
		span.SetName(name)
		span.SetAttributes(semconv.HTTPRoute(route))
	}
}

// knownMethod is the method as http.request.method records it: one of the
// standard methods, or "_OTHER".
func knownMethod(m []byte) string {
	switch string(m) {
	case fasthttp.MethodGet:
		return fasthttp.MethodGet
	case fasthttp.MethodHead:
		return fasthttp.MethodHead
	case fasthttp.MethodPost:
		return fasthttp.MethodPost
	case fasthttp.MethodPut:
		return fasthttp.MethodPut
	case fasthttp.MethodPatch:
		return fasthttp.MethodPatch
	case fasthttp.MethodDelete:
		return fasthttp.MethodDelete
	case fasthttp.MethodOptions:
		return fasthttp.MethodOptions
	case fasthttp.MethodConnect:
		return fasthttp.MethodConnect
	case fasthttp.MethodTrace:
		return fasthttp.MethodTrace
	}
	return "_OTHER"
}

// headerCarrier reads a request's headers for the propagator.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }

// Set is never called: the server extracts, it does not inject.
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }

func (c headerCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}
