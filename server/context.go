package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// callContext is the context of one request's store, cache and limiter
// calls. It carries the request's budget down: its deadline is the earlier
// of the request's start plus Config.RequestTimeout and the deadline of the
// invocation the request belongs to (a Lambda event, Config.Invocation),
// and it ends when that deadline passes, when the invocation's context
// ends, or when Shutdown gives up on the drain and cancels the server's
// base context. Its values are the invocation's, and the request's span
// when tracing is on.
//
// A *fasthttp.RequestCtx is recycled when its handler returns, so it is
// never a parent here. A callContext is pooled instead, because the cached
// read path must not allocate: it costs nothing until a callee asks for its
// Done channel. Only then is a standard context made (a timer included),
// and the callContext is then left to the garbage collector rather than
// pooled, since whoever holds that channel may outlive the request. A
// callee that only reads the deadline, the error or a value (a cache hit,
// an in-process rate-limit decision) leaves it poolable.
type callContext struct {
	base     context.Context // the server's; Shutdown cancels it
	parent   context.Context // the invocation's, or nil
	deadline time.Time       // zero: none
	// watched is set once Done has been handed out.
	watched atomic.Bool
	mu      sync.Mutex // serializes made's creation
	made    atomic.Pointer[madeContext]
}

// madeContext is the standard context a callContext stands for once a
// callee watches it.
type madeContext struct {
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool // ends the base context's hold on ctx, when parented elsewhere
}

var _ context.Context = (*callContext)(nil)

// callContextKey is the user-value key of a request's callContext.
type callContextKey struct{}

var callContexts = sync.Pool{New: func() any { return new(callContext) }}

// acquireContext makes the callContext of the request ctx and hands it to
// the handlers through a user value; releaseContext ends it. span, when
// tracing, is the request's span, which the calls then carry.
func (s *Server) acquireContext(ctx *fasthttp.RequestCtx, span trace.Span) *callContext {
	c := callContexts.Get().(*callContext)
	c.base = s.base
	if s.cfg.RequestTimeout > 0 {
		c.deadline = requestStart(ctx).Add(s.cfg.RequestTimeout)
	}
	if s.cfg.Invocation != nil {
		if p := s.cfg.Invocation(ctx); p != nil && p != context.Background() {
			c.parent = p
			if d, ok := p.Deadline(); ok && (c.deadline.IsZero() || d.Before(c.deadline)) {
				c.deadline = d
			}
		}
	}
	if span != nil {
		// The calls' spans are children of the request's (tracing on only).
		p := c.parent
		if p == nil {
			p = c.base
		}
		c.parent = trace.ContextWithSpan(p, span)
	}
	ctx.SetUserValue(callContextKey{}, c)
	return c
}

// releaseContext ends c once the request's handler has returned: a made
// context is cancelled (its timer stopped), and c goes back to the pool
// unless someone may still hold its Done channel.
func (s *Server) releaseContext(ctx *fasthttp.RequestCtx, c *callContext) {
	ctx.SetUserValue(callContextKey{}, nil)
	if m := c.made.Load(); m != nil {
		m.cancel()
		if m.stop != nil {
			m.stop()
		}
	}
	if c.watched.Load() {
		return
	}
	c.base, c.parent, c.deadline = nil, nil, time.Time{}
	callContexts.Put(c)
}

// callContext returns the context for the store, cache and limiter calls
// of the request ctx. Outside a request that outer wraps (never in
// production) it is the server's base context.
func (s *Server) callContext(ctx *fasthttp.RequestCtx) context.Context {
	if c, ok := ctx.UserValue(callContextKey{}).(*callContext); ok {
		return c
	}
	return s.base
}

// Deadline is the request's deadline, if it has one.
func (c *callContext) Deadline() (time.Time, bool) {
	return c.deadline, !c.deadline.IsZero()
}

// Done returns a channel closed when the request's calls must end. With no
// deadline and no invocation that is the base context's own channel, so a
// child context hangs off the base context directly.
func (c *callContext) Done() <-chan struct{} {
	c.watched.Store(true)
	if c.parent == nil && c.deadline.IsZero() {
		return c.base.Done()
	}
	return c.standard().Done()
}

// Err reports why the request's calls must end, or nil.
func (c *callContext) Err() error {
	if m := c.made.Load(); m != nil {
		return m.ctx.Err()
	}
	if c.base.Err() != nil {
		return context.Canceled
	}
	if c.parent != nil {
		if err := c.parent.Err(); err != nil {
			return err
		}
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value returns the invocation's values. Once a context is made, it
// answers, so that the context package recognizes it as the parent of the
// contexts callees derive and links them without a goroutine.
func (c *callContext) Value(key any) any {
	if m := c.made.Load(); m != nil {
		return m.ctx.Value(key)
	}
	if c.parent != nil {
		return c.parent.Value(key)
	}
	return c.base.Value(key)
}

// standard returns the standard context c stands for, making it on first use.
func (c *callContext) standard() context.Context {
	if m := c.made.Load(); m != nil {
		return m.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.made.Load(); m != nil {
		return m.ctx
	}
	parent := c.base
	if c.parent != nil {
		parent = c.parent
	}
	m := new(madeContext)
	if c.deadline.IsZero() {
		m.ctx, m.cancel = context.WithCancel(parent)
	} else {
		m.ctx, m.cancel = context.WithDeadline(parent, c.deadline)
	}
	if c.parent != nil {
		m.stop = context.AfterFunc(c.base, m.cancel)
	}
	c.made.Store(m)
	return m.ctx
}
