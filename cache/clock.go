package cache

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// coarseClock is the clock of the hit paths, the package's only one: a
// goroutine reads the real clock every step and publishes it, so that a hit
// compares an expiry time with one atomic load instead of a clock read,
// which costs more than the rest of a hit on some virtual machines. The
// same goroutine runs its owner's periodic work (Local's sweep, Redis's
// shared deadline), so each cache starts one goroutine in all.
//
// Readings are Unix nanoseconds, advanced by the monotonic clock from the
// moment the clock started, so that a step of the wall clock never makes
// entries expire early or live long. They compare with rueidis's expiry
// times (also Unix) up to such steps.
type coarseClock struct {
	base      time.Time
	now       atomic.Int64
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// start starts the clock, reading every step and then calling tick (when
// set) with the new reading from the clock's goroutine. A clock lives in
// its owner's struct, read on the hit path without another indirection,
// and must not be copied.
func (c *coarseClock) start(step time.Duration, tick func(now int64)) {
	c.base = time.Now()
	c.stop, c.done = make(chan struct{}), make(chan struct{})
	c.now.Store(c.precise())
	go c.run(step, tick)
}

// coarse is the last reading: at most a step behind, more when the process
// is starved or was frozen.
func (c *coarseClock) coarse() int64 { return c.now.Load() }

// precise reads the real clock, in the same units, for paths that can
// afford it.
func (c *coarseClock) precise() int64 { return c.base.UnixNano() + int64(time.Since(c.base)) }

func (c *coarseClock) run(step time.Duration, tick func(now int64)) {
	defer close(c.done)
	t := time.NewTicker(step)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		now := c.precise()
		c.now.Store(now)
		if tick != nil {
			tick(now)
		}
	}
}

// close stops the clock. From then on coarse reads as the end of time, so
// that nothing looks fresh to a hit path whose clock no longer moves; the
// slow paths, on the precise clock, still work.
func (c *coarseClock) close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		c.now.Store(math.MaxInt64)
	})
}
