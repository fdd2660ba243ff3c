package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlines hands out a context whose deadline is between timeout and
// timeout+2*step from now. One context is shared by every call made during a
// step and the cache's clock replaces it every step (tick), so a cache hit
// neither pays for context.WithTimeout (allocations and a timer) nor reads
// the clock, which costs more than the rest of a hit on some virtual
// machines.
//
// The price: a Redis call does not stop when the caller's own context is
// cancelled, which is harmless because it stops after timeout anyway; and
// if the process is so starved that the clock ticks late, a call gets less
// than timeout. A context found already expired (a process thawed after a
// freeze, as on Lambda) is replaced on the spot.
type deadlines struct {
	cur       atomic.Pointer[sharedDeadline]
	life      time.Duration
	step      time.Duration // how often tick should run
	mu        sync.Mutex    // serializes renewals and close
	closed    bool
	closeOnce sync.Once
}

// sharedDeadline is one shared context and the function that releases its
// timer.
type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// newDeadlines makes the first context. The step is an eighth of timeout
// and a context lives timeout plus two steps, so a call gets at most 25%
// more time than asked for, and still gets the full timeout when the clock
// ticks up to one step late.
func newDeadlines(timeout time.Duration) *deadlines {
	step := max(timeout/8, time.Millisecond)
	d := &deadlines{life: timeout + 2*step, step: step}
	d.renew(nil)
	return d
}

// get returns the current shared context.
func (d *deadlines) get() context.Context {
	s := d.cur.Load()
	if s.ctx.Err() != nil {
		return d.renew(s)
	}
	return s.ctx
}

// tick replaces the shared context; the clock calls it every step.
func (d *deadlines) tick() { d.renew(d.cur.Load()) }

// renew replaces old, unless another goroutine already did or the source is
// closed, and returns the current context. The old one is left to expire on
// its own timer: calls made with it may still be running.
func (d *deadlines) renew(old *sharedDeadline) context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.cur.Load(); cur != old || d.closed {
		return cur.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.life)
	d.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel})
	return ctx
}

// close leaves a cancelled context in place, so that calls after it fail at
// once instead of waiting. Stop the clock that ticks d first.
func (d *deadlines) close() {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.closed = true
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d.cur.Swap(&sharedDeadline{ctx: ctx, cancel: cancel}).cancel()
	})
}
