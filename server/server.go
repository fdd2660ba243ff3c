// Package server is api-perf's HTTP face: a fasthttp router, the handlers
// for products and orders, problem+json errors, request ids, access logs,
// API-key checks, rate-limit headers, metrics and the OpenAPI document. It
// talks to storage, cache and limiter only through the root package's
// interfaces (apiperf.ProductStore, apiperf.Cache, apiperf.RateLimiter...),
// which they satisfy directly.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	apiperf "github.com/api-perf/api-perf"
)

// Check is a named readiness check for /readyz.
type Check struct {
	Name string
	apiperf.Pinger
	// Optional marks a dependency the service answers without, worse: when
	// its Ping fails, /readyz still answers 200, with the check and the
	// status "degraded" (read replicas: lists go to the primary).
	Optional bool
}

// Config is everything the server needs; cmd builds it.
type Config struct {
	Products apiperf.ProductStore
	Orders   apiperf.OrderStore
	// Cache, when set, serves product reads; writes invalidate it.
	Cache apiperf.Cache
	// Limiter, when set, rate-limits the API routes: safe methods under
	// ReadLimit, the others under WriteLimit, per client (the configured
	// API key it authenticated with, else its address). A zero policy
	// leaves its class unlimited. The operational routes are never limited.
	Limiter               apiperf.RateLimiter
	ReadLimit, WriteLimit apiperf.RatePolicy
	// AuthFailureLimit is charged to the address of every request that
	// fails authentication (a write without a configured key, when APIKeys
	// is set); once it is spent, such requests get 429 instead of 401. A
	// zero policy leaves failures unlimited.
	AuthFailureLimit apiperf.RatePolicy
	// Ready lists the dependencies /readyz checks.
	Ready []Check
	// APIKeys, when not empty, are the bearer tokens writes need.
	APIKeys []string
	// TrustedProxies are the peers whose forwarding header is believed.
	TrustedProxies []netip.Prefix
	// ForwardedHeader is the header trusted proxies name the client in.
	ForwardedHeader ForwardedHeader
	// IPv6Prefix groups IPv6 clients for the limiter: every address in one
	// prefix of this many bits is one client. Zero means 64; 128 turns
	// grouping off.
	IPv6Prefix int
	// AccessLog is "all", "errors" (5xx only) or "off".
	AccessLog string
	Logger    *slog.Logger
	// Registerer receives the HTTP metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Metrics, when set, is served at /metrics on the API listener.
	Metrics fasthttp.RequestHandler
	// RequestTimeout is one request's budget: the store, cache and limiter
	// calls it makes get the request's start plus RequestTimeout as their
	// deadline (each may have a shorter one of its own). Zero sets none.
	RequestTimeout time.Duration
	// Invocation, when set, returns the context of the invocation a
	// request belongs to, such as lambda.InvocationContext: its deadline
	// bounds the request's calls too, its end ends them, and its values
	// are theirs. It may return nil or context.Background() for none.
	Invocation func(*fasthttp.RequestCtx) context.Context
	// MaxBodySize caps request bodies; zero means 1 MiB.
	MaxBodySize int
	// TracerProvider, when set, makes every request a server span that
	// joins the caller's W3C trace context; nil traces nothing and costs
	// the request path one nil check.
	TracerProvider trace.TracerProvider
	// MaxConns caps the open connections, MaxConnsPerClient those of one
	// client address (IPv6 grouped by IPv6Prefix; trusted proxies are
	// exempt): a connection over a cap is answered 503 and closed at once.
	// Zero picks DefaultMaxConns and DefaultMaxConnsPerClient.
	MaxConns, MaxConnsPerClient int
	// MaxHeaderBytes caps the request line and headers (431 above it);
	// zero picks DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ReadTimeout, WriteTimeout and IdleTimeout bound slow clients; zero
	// picks 10s, 10s and 90s, a negative value turns one off (behind a
	// proxy that enforces its own; fasthttp reads the clock for each one
	// per request).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// Server serves the API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	router  *router.Router
	handler fasthttp.RequestHandler
	metrics *httpMetrics
	http    *fasthttp.Server
	// built is http once New has succeeded: the in-flight gauge reads it,
	// and a scrape may come before then, or after a New that failed with
	// the gauge already registered (0 in flight either way).
	built atomic.Pointer[fasthttp.Server]
	// tracer makes the request spans; nil when tracing is off.
	tracer trace.Tracer
	keys   []apiKey
	// limits are the route classes' policies, nil for an unlimited class;
	// authLimit is the policy of failed authentications, nil for none.
	limits    [numClasses]*limitClass
	authLimit *limitClass
	// scopes are the idempotency scopes of keys, index for index.
	scopes []apiperf.Scope
	// base is the ancestor of every request's call context (context.go).
	// Shutdown cancels it once the drain budget is spent, so that the
	// requests still running roll their transactions back and return.
	base       context.Context
	cancelBase context.CancelFunc
	// running counts handlers that have not returned; draining asks each
	// connection to close after its response once Shutdown has begun.
	running  atomic.Int64
	draining atomic.Bool
	// conns counts open client connections. A handler that has returned
	// has not necessarily had its response written: fasthttp writes it
	// afterwards, so Shutdown also waits for the connections to close.
	conns   atomic.Int64
	edge    *connLimits
	ridBase [12]byte
	ridSeq  atomic.Uint64
	// loadProductKey is loadProductByKey as a func value, made once so the
	// cached read path passes it without allocating a closure.
	loadProductKey apiperf.LoadFunc
	// routes lists every registered method and path, for the OpenAPI test.
	routes []Route
	// ready is the last readiness result, reused for readyTTL.
	ready readyCache
}

// Route is one registered method and path template.
type Route struct{ Method, Path string }

// Defaults of the limits a zero Config leaves to the server; the caps'
// are in edges.go. cmd's settings table takes its defaults from these.
const (
	DefaultMaxBodySize  = 1 << 20
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultIdleTimeout  = 90 * time.Second
)

// New builds a server and its routes. It fails only when its metrics
// cannot be registered on cfg.Registerer (see promreg).
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodySize == 0 {
		cfg.MaxBodySize = DefaultMaxBodySize
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	for _, t := range []*time.Duration{&cfg.ReadTimeout, &cfg.WriteTimeout, &cfg.IdleTimeout} {
		if *t < 0 {
			*t = 0
		}
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerClient <= 0 {
		cfg.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.IPv6Prefix <= 0 || cfg.IPv6Prefix > 128 {
		cfg.IPv6Prefix = 64
	}
	if cfg.AccessLog == "" {
		cfg.AccessLog = "errors"
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	var err error
	if s.metrics, err = newHTTPMetrics(cfg.Registerer, s.inFlight); err != nil {
		s.cancelBase()
		return nil, fmt.Errorf("HTTP metrics: %w", err)
	}
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, newAPIKey(k))
		s.scopes = append(s.scopes, scopeOf(k))
	}
	s.limits = limitClasses(&cfg)
	if s.edge, err = newConnLimits(s, cfg.Registerer); err != nil {
		s.cancelBase()
		return nil, fmt.Errorf("connection metrics: %w", err)
	}
	if cfg.Limiter != nil && cfg.AuthFailureLimit != (apiperf.RatePolicy{}) {
		s.authLimit = newLimitClass(cfg.AuthFailureLimit)
	}
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer("github.com/api-perf/api-perf/server")
	}
	s.loadProductKey = s.loadProductByKey
	s.initRequestIDs()
	s.routesSetup()
	s.handler = s.outer(s.router.Handler)
	s.http = &fasthttp.Server{
		Handler:                       s.handler,
		Name:                          "api-perf",
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		MaxRequestBodySize:            cfg.MaxBodySize,
		ReadBufferSize:                cfg.MaxHeaderBytes,
		Concurrency:                   cfg.MaxConns,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 false,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		ConnState:                     s.connState,
		ErrorHandler:                  s.transportError,
		Logger:                        s.FastHTTPLogger(),
	}
	s.built.Store(s.http)
	return s, nil
}

// inFlight is the requests the server is serving, for the metrics.
func (s *Server) inFlight() float64 {
	if h := s.built.Load(); h != nil {
		return float64(h.GetCurrentConcurrency())
	}
	return 0
}

// Handler is the whole API as one fasthttp handler (the Lambda adapter and
// benchmarks call it directly). It recovers its own panics: the request
// is answered with a 500 problem and the panic is logged with its stack.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// Routes lists every registered method and path template.
func (s *Server) Routes() []Route { return s.routes }

// Serve accepts connections on ln until Shutdown, within the connection
// caps (see edges.go). With connection timeouts on, connections set their
// deadlines lazily (see lazyConn).
func (s *Server) Serve(ln net.Listener) error {
	ln = limitListener{ln, s.edge}
	if s.http.ReadTimeout > 0 || s.http.WriteTimeout > 0 || s.http.IdleTimeout > 0 {
		ln = lazyListener{ln}
	}
	return s.http.Serve(ln)
}

// Shutdown stops accepting connections and lets in-flight requests finish
// until ctx ends. Requests still running then are cancelled: their store
// calls end and their transactions roll back (a COMMIT already sent is
// waited for, briefly, so a committed order is still answered as one).
// Shutdown returns once every handler has returned and every answer has
// been written and every connection has closed, lingering ones included
// (see linger), or drainGrace after the drain with an error naming what
// is left; only then may the caller close the stores, the cache and the
// limiter, and exit.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	err := s.http.ShutdownWithContext(ctx)
	if err != nil || s.running.Load() > 0 {
		s.cancelBase()
	}
	// The answers of the cancelled requests are written after their
	// handlers return, and each connection then closes (draining asks it
	// to), so the wait lasts until the counts reach zero: the caller exits
	// next, and an unwritten 201 would die with the process. Even with
	// nothing cancelled, fasthttp counts a connection out just before it
	// closes it, and one closed after a transport error lingers for up to
	// lingerTime; exiting under it would reset it (see linger).
	deadline := time.Now().Add(drainGrace)
	for (s.running.Load() > 0 || s.conns.Load() > 0 || s.edge.lingeringConns() > 0) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.running.Load(); n > 0 {
		return fmt.Errorf("%d requests still running %v after they were cancelled", n, drainGrace)
	}
	if n := s.conns.Load(); n > 0 {
		return fmt.Errorf("%d connections still open %v after the drain", n, drainGrace)
	}
	if n := s.edge.lingeringConns(); n > 0 {
		return fmt.Errorf("%d connections still closing %v after the drain", n, drainGrace)
	}
	return err
}

// connState counts open connections for Shutdown.
func (s *Server) connState(_ net.Conn, state fasthttp.ConnState) {
	switch state {
	case fasthttp.StateNew:
		s.conns.Add(1)
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.conns.Add(-1)
	}
}

// drainGrace bounds the wait for cancelled requests to return. A cancelled
// request ends its database call at once; one whose COMMIT was already sent
// may wait for its outcome for a second more (see storage.PlaceOrders).
const drainGrace = 2 * time.Second

// transportError answers errors fasthttp meets before a handler runs, such
// as a body over the size limit or a malformed request line.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	var ne net.Error
	s.setRequestID(ctx)
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		s.problem(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "the request line and headers are larger than the limit")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.problem(ctx, fasthttp.StatusRequestEntityTooLarge, "the request body is larger than the limit")
	case errors.As(err, &ne) && ne.Timeout():
		s.problem(ctx, fasthttp.StatusRequestTimeout, "the request was not received in time")
	default:
		s.problem(ctx, fasthttp.StatusBadRequest, "the request is malformed")
	}
	ctx.SetConnectionClose()
	// The client may still be sending (the rest of its headers or body):
	// close in stages so that it reads this answer (see linger).
	lingerOnClose(ctx.Conn())
}

// FastHTTPLogger is where fasthttp's own log lines go (at Debug, on the
// server's logger): the server's connections log there, and so should
// anything else that serves Handler, such as the Lambda adapter.
func (s *Server) FastHTTPLogger() fasthttp.Logger { return fasthttpLogger{s.log} }

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug("fasthttp", "message", fmt.Sprintf(format, args...))
}
