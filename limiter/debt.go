package limiter

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The debt flush.
//
// Debt below the cap waits here for the next flush instead of costing a
// script call per request (see batch.go for why that keeps the bound). A
// bucket joins the queue when it takes its first debt since the last
// flush; every DebtDelay the flush takes the whole queue and sends each
// bucket's debt as a charge-only call, queued in the coalescer with every
// other call, so the charges of a crowd go out in a few round trips. A
// bucket whose call is still in flight is charged when that call returns;
// debt that any call fails to charge (the flush's, the one sent at the
// cap, a request's own) goes back into the queue. With debt charged at
// once (a negative DebtDelay) the loop still runs, every DefaultDebtDelay,
// for those retries. Close flushes once more, so a process that stops cleanly
// leaves no debt uncharged.

// debtEntry is one bucket waiting for the flush, with what its call needs.
// The strings are the queue's own: a request's may point into its buffers.
type debtEntry struct {
	b         *bucket
	name, key string
	t         int64
	burst     int
}

// debtQueue is the buckets waiting for the next flush.
type debtQueue struct {
	mu      sync.Mutex
	entries []debtEntry
	// stopped says that the last flush has run: a bucket is no longer
	// queued but charged at once.
	stopped bool
	// flushes counts the flushes run, for tests.
	flushes atomic.Int64

	quit     chan struct{} // closed by stop
	done     chan struct{} // closed when the flush loop has returned
	stopOnce sync.Once
}

// start runs the flush loop for r, every period, until stop.
func (q *debtQueue) start(r *Redis, period time.Duration) {
	q.quit, q.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(q.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				q.flush(r)
			case <-q.quit:
				q.flush(r)
				return
			}
		}
	}()
}

// stop ends the flush loop after one last flush; the calls that flush
// queued are the limiter's background calls, which Close waits for. Debt
// queued meanwhile, by requests still running, is flushed after it, and
// from then on add refuses, so that debt is charged at once instead of
// waiting for a flush that will not come.
func (q *debtQueue) stop(r *Redis) {
	if q.quit != nil {
		q.stopOnce.Do(func() { close(q.quit) })
		<-q.done
	}
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.flush(r)
}

// add queues b and reports whether it did: after stop it does not. The
// caller holds b.mu.
func (q *debtQueue) add(b *bucket, name, key string, t int64, burst int) bool {
	e := debtEntry{b: b, name: strings.Clone(name), key: strings.Clone(key), t: t, burst: burst}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return false
	}
	b.queued = true
	q.entries = append(q.entries, e)
	return true
}

// len is the number of buckets waiting, for tests.
func (q *debtQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// flush sends the debt of every bucket in the queue.
func (q *debtQueue) flush(r *Redis) {
	q.flushes.Add(1)
	q.mu.Lock()
	entries := q.entries
	q.entries = nil
	q.mu.Unlock()
	for i := range entries {
		e := &entries[i]
		b := e.b
		b.mu.Lock()
		b.queued = false
		// A bucket with no debt left was charged meanwhile by a call that
		// reached the cap; one with a call in flight is charged when that
		// call returns (chargeLeft), or queued again if it fails.
		if b.owed > 0 && b.inflight == nil {
			r.prefetch(b, e.name, e.key, e.t, e.burst, 0)
		}
		b.mu.Unlock()
	}
}
