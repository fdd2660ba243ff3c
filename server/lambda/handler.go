// Package lambda serves AWS Lambda HTTP events with a fasthttp.RequestHandler,
// in process and without a socket. API Gateway REST (v1), HTTP API (v2),
// function URL and ALB target-group events become a pooled
// fasthttp.RequestCtx; the handler's response becomes the matching Lambda
// response, with every header (several Set-Cookie included), the status and
// binary bodies (base64) intact.
//
// The adapter knows nothing of the API it serves; cmd/api-perf hands it the
// same router the HTTP server uses.
package lambda

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Options configures a Handler. The zero value serves events as they come.
type Options struct {
	// StripPrefix is a base path removed from the start of every request
	// path, such as "/prod" for an API mapped under a custom domain's base
	// path. "/prod" strips "/prod/products" and "/prod", never "/products".
	StripPrefix string
	// StripStage removes "/{stage}" from the start of the path when the path
	// begins with it: HTTP APIs with a named stage (not "$default") put it
	// there, in both payload formats, while the routes do not have it. A REST
	// API event whose requestContext.path shows that the stage is already
	// outside the path keeps its path whole, so a stage named "api" does not
	// break the route "/api/v1/products".
	StripStage bool
	// Logger receives the fasthttp context's log lines (RequestCtx.Logger);
	// pass the serving handler's own (server.Server.FastHTTPLogger) so that
	// an event logs as a connection does. Nil discards them.
	Logger fasthttp.Logger
}

// Handler converts Lambda HTTP events into fasthttp requests for one
// fasthttp.RequestHandler. It is safe for concurrent use, as the Lambda
// runtime needs for functions with several concurrent invocations.
type Handler struct {
	handler fasthttp.RequestHandler
	opts    Options
	prefix  []byte    // StripPrefix with one leading slash and no trailing one
	pool    sync.Pool // of *invocation
}

// NewHandler returns a Handler that calls h for every event. h answers
// its own panics, as server.Server.Handler does with the same 500 problem
// a connection gets: a panic that reaches the adapter fails the
// invocation, and aws-lambda-go then ends the environment.
func NewHandler(h fasthttp.RequestHandler, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = discard{}
	}
	hd := &Handler{
		handler: h,
		opts:    opts,
	}
	if p := strings.Trim(opts.StripPrefix, "/"); p != "" {
		hd.prefix = []byte("/" + p)
	}
	return hd
}

// invocation is the pooled state of one event: the fasthttp context the
// handler sees and every buffer the conversion uses. Nothing of it outlives
// Invoke; the response document is copied out before it is released.
type invocation struct {
	ctx   fasthttp.RequestCtx
	conn  conn
	addr  net.TCPAddr
	ip    [16]byte
	ev    envelope
	sc    scratch
	out   []byte
	pairs []header
}

// maxPooledBuffer bounds the buffers an invocation keeps for the next one, so
// that one large body does not stay in memory for the life of the
// environment.
const maxPooledBuffer = 1 << 20

func (h *Handler) acquire() *invocation {
	if v := h.pool.Get(); v != nil {
		return v.(*invocation)
	}
	return &invocation{}
}

// release resets inv and returns it to the pool.
func (h *Handler) release(inv *invocation) {
	inv.ctx.Request.Reset()
	inv.ctx.Response.Reset()
	inv.ctx.SetRemoteAddr(nil)
	inv.ctx.Hijack(nil)
	inv.ev.reset()
	clear(inv.pairs)
	inv.pairs = inv.pairs[:0]
	inv.out = inv.out[:0]
	if cap(inv.out) > maxPooledBuffer || cap(inv.sc.body) > maxPooledBuffer ||
		cap(inv.sc.str) > maxPooledBuffer || cap(inv.ev.Body) > maxPooledBuffer {
		return
	}
	h.pool.Put(inv)
}

// Invoke implements github.com/aws/aws-lambda-go/lambda.Handler: the raw
// event JSON in, the response JSON out. A payload that is not one of the four
// HTTP events gives an error wrapping ErrUnsupportedEvent (the invocation
// fails, it does not crash the environment).
//
// The handler can read the invocation's context, with its deadline and
// lambdacontext values, through InvocationContext. An event with an AWS
// X-Ray trace header (X-Amzn-Trace-Id, or the invocation's) and no W3C
// traceparent gets the equivalent traceparent, so a traced handler joins
// that trace.
func (h *Handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	inv := h.acquire()
	defer h.release(inv)

	rc := &inv.ctx
	rc.Init2(&inv.conn, h.opts.Logger, false)
	k, ip, err := inv.decodeRequest(payload, h)
	if err != nil {
		return nil, err
	}
	inv.setRemoteAddr(ip)
	joinTrace(ctx, &rc.Request.Header)
	rc.SetUserValue(invocationKey{}, ctx)

	h.handler(rc)

	out := inv.encodeResponse(k)
	inv.out = out
	// The runtime sends the document after Invoke returns, possibly while
	// this invocation serves the next event: it gets its own copy.
	return bytes.Clone(out), nil
}

// setRemoteAddr makes ip the request's remote address, so that RemoteIP and
// RemoteAddr work as behind a listener. Lambda events do not carry the
// client's port; it is 0.
func (inv *invocation) setRemoteAddr(ip netip.Addr) {
	if !ip.IsValid() {
		return
	}
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		inv.addr.IP = append(inv.ip[:0], a[:]...)
	} else {
		a := ip.As16()
		inv.addr.IP = append(inv.ip[:0], a[:]...)
	}
	inv.addr.Port = 0
	inv.addr.Zone = ip.Zone()
	inv.ctx.SetRemoteAddr(&inv.addr)
}

// invocationKey is the user-value key of the Lambda invocation's context.
type invocationKey struct{}

// InvocationContext returns the context of the Lambda invocation ctx belongs
// to: its deadline is the function's timeout and it carries the
// lambdacontext values. The fasthttp context itself never expires, so
// database calls made while serving an event should use this one. Outside
// Lambda it returns context.Background().
func InvocationContext(ctx *fasthttp.RequestCtx) context.Context {
	if c, ok := ctx.UserValue(invocationKey{}).(context.Context); ok {
		return c
	}
	return context.Background()
}

// conn is the connection the fasthttp context believes it serves. There is
// none: reads and writes fail, and the addresses are the ones of the event.
type conn struct{}

var _ net.Conn = (*conn)(nil)

func (*conn) Read([]byte) (int, error)         { return 0, errNoConn }
func (*conn) Write([]byte) (int, error)        { return 0, errNoConn }
func (*conn) Close() error                     { return nil }
func (*conn) LocalAddr() net.Addr              { return zeroAddr }
func (*conn) RemoteAddr() net.Addr             { return zeroAddr }
func (*conn) SetDeadline(time.Time) error      { return nil }
func (*conn) SetReadDeadline(time.Time) error  { return nil }
func (*conn) SetWriteDeadline(time.Time) error { return nil }

var (
	errNoConn = fmt.Errorf("lambda: a Lambda event has no connection")
	zeroAddr  = &net.TCPAddr{IP: net.IPv4zero}
)

// discard is the logger of a Handler given none.
type discard struct{}

func (discard) Printf(string, ...any) {}
