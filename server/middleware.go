package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// Header names on the hot paths, in the form fasthttp normalizes names to
// (what goes on the wire), so that setting one does not normalize it again.
var (
	hRequestID       = canonical("X-Request-ID")
	hETag            = canonical("ETag")
	hRateLimitPolicy = canonical("RateLimit-Policy")
	hRateLimit       = canonical("RateLimit")
	hRetryAfter      = canonical("Retry-After")
)

func canonical(name string) []byte { return fasthttp.AppendNormalizedHeaderKey(nil, name) }

func (s *Server) initRequestIDs() {
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand does not fail
	hex.Encode(s.ridBase[:], b[:])
}

// setRequestID keeps a well-formed X-Request-ID from the client, or makes
// one from the process's random prefix and a counter (unique, no syscall,
// no allocation), and echoes it on the response.
func (s *Server) setRequestID(ctx *fasthttp.RequestCtx) {
	if id := ctx.Request.Header.PeekCanonical(hRequestID); validRequestID(id) {
		ctx.Response.Header.SetCanonical(hRequestID, id)
		return
	}
	var buf [12 + 1 + 16]byte
	copy(buf[:], s.ridBase[:])
	buf[12] = '-'
	n := s.ridSeq.Add(1)
	for i := len(buf) - 1; i > 12; i-- {
		buf[i] = "0123456789abcdef"[n&15]
		n >>= 4
	}
	ctx.Response.Header.SetCanonical(hRequestID, buf[:])
}

func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// requestID is the id of the current request (for logs and problems).
func requestID(ctx *fasthttp.RequestCtx) string {
	return string(ctx.Response.Header.PeekCanonical(hRequestID))
}

// outer wraps the router: request ids, the request's span and call
// context, panic recovery, the access log, and the count of running
// handlers that Shutdown waits for.
func (s *Server) outer(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		s.running.Add(1)
		defer s.running.Add(-1)
		if s.draining.Load() {
			// fasthttp stops closing kept-alive connections when its own
			// wait times out; each one closes after this response instead.
			ctx.SetConnectionClose()
		}
		s.setRequestID(ctx)
		var span trace.Span
		if s.tracer != nil {
			span = s.startSpan(ctx)
		}
		cc := s.acquireContext(ctx, span)
		defer func() {
			s.releaseContext(ctx, cc)
			if r := recover(); r != nil {
				s.log.Error("panic in handler", "request_id", requestID(ctx), "method", string(ctx.Method()),
					"path", string(ctx.Path()), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				// Whatever the handler had written, headers included, goes;
				// the request id stays, as the log line quotes it.
				rid := ctx.Response.Header.PeekCanonical(hRequestID)
				var buf [128]byte
				rid = append(buf[:0], rid...)
				ctx.Response.Reset()
				ctx.Response.Header.SetCanonical(hRequestID, rid)
				s.problem(ctx, fasthttp.StatusInternalServerError, "internal error; quote the request id when reporting it")
			}
			// A request that began before Shutdown closes its connection
			// too, so that Shutdown's wait for the connections ends.
			if s.draining.Load() {
				ctx.SetConnectionClose()
			}
			s.accessLog(ctx, span)
			if span != nil {
				endSpan(ctx, span)
			}
		}()
		next(ctx)
	}
}

// accessLog logs the request, with its trace and span ids when its span
// is recorded (sampled), so that a log line leads to its trace.
func (s *Server) accessLog(ctx *fasthttp.RequestCtx, span trace.Span) {
	status := ctx.Response.StatusCode()
	switch s.cfg.AccessLog {
	case "off":
		return
	case "errors":
		if status < 500 {
			return
		}
	}
	attrs := []any{"method", string(ctx.Method()), "path", string(ctx.Path()), "status", status,
		"duration_ms", float64(time.Since(requestStart(ctx)).Microseconds()) / 1000, "bytes", len(ctx.Response.Body()),
		"remote_ip", s.clientIP(ctx).String(), "request_id", requestID(ctx)}
	if span != nil && span.IsRecording() {
		sc := span.SpanContext()
		attrs = append(attrs, "trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String())
	}
	s.log.Info("request", attrs...)
}
