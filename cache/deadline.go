package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlines hands out a context whose deadline is between timeout and
// timeout+step from now. One context is shared by every call made during a
// step and a goroutine replaces it every step, so a cache hit neither pays
// for context.WithTimeout (allocations and a timer) nor reads the clock,
// which costs more than the rest of a hit on some virtual machines.
//
// The price: a Redis call does not stop when the caller's own context is
// cancelled, which is harmless because it stops after timeout anyway; and
// if the process is so starved that the ticker runs late, a call gets less
// than timeout.
type deadlines struct {
	cur       atomic.Pointer[sharedDeadline]
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// sharedDeadline is one shared context and the function that releases its
// timer.
type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// newDeadlines starts the renewing goroutine; close stops it. The step is a
// quarter of timeout, so a call gets at most 25% more time than asked for.
func newDeadlines(timeout time.Duration) *deadlines {
	step := max(timeout/4, time.Millisecond)
	d := &deadlines{stop: make(chan struct{}), done: make(chan struct{})}
	d.renew(timeout + step)
	go d.run(timeout+step, step)
	return d
}

// get returns the current shared context.
func (d *deadlines) get() context.Context {
	return d.cur.Load().ctx
}

// run replaces the shared context every step until close.
func (d *deadlines) run(life, step time.Duration) {
	defer close(d.done)
	t := time.NewTicker(step)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.renew(life)
		}
	}
}

// renew makes the next shared context. The previous one is left to expire on
// its own timer: calls made with it may still be running.
func (d *deadlines) renew(life time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), life)
	d.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel})
}

// close stops the renewing and leaves a cancelled context in place, so that
// calls after it fail at once instead of waiting.
func (d *deadlines) close() {
	d.closeOnce.Do(func() {
		close(d.stop)
		<-d.done
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d.cur.Swap(&sharedDeadline{ctx: ctx, cancel: cancel}).cancel()
	})
}
