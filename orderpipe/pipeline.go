// Package orderpipe coalesces concurrent order placements into batches, so
// that one transaction places the orders that arrived while the previous
// one committed. It wraps any apiperf.OrderStore whose PlaceOrders decides
// a batch's orders one by one in order (storage.DB does); docs/batching.md
// is the design.
package orderpipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	apiperf "github.com/api-perf/api-perf"
)

// Options bound a Pipeline.
type Options struct {
	// Lanes is how many batches may commit at once. A product always takes
	// the same lane, so orders for one product coalesce while different
	// products commit in parallel. Zero means 1.
	Lanes int
	// BatchMax is the most placements one transaction carries; zero means
	// 128.
	BatchMax int
	// QueueMax is how many placements may wait in one lane while its batch
	// commits; one more is refused at once as EUNAVAILABLE. Zero means
	// 1024.
	QueueMax int
	// Invalidate, when set, drops the cached copies of the products whose
	// stock a batch may have changed: once per product per batch, before
	// any of its callers is answered. Those placements come back with
	// Invalidated set. Errors are Invalidate's to report.
	Invalidate func(ctx context.Context, productIDs []int64)
	// Registerer receives the apiperf_order_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Pipeline is an apiperf.OrderStore that places single orders in batches
// and passes every other call to the store it wraps.
type Pipeline struct {
	apiperf.OrderStore
	opts    Options
	lanes   []lane
	metrics *metrics
	waiters sync.Pool
}

var _ apiperf.OrderStore = (*Pipeline)(nil)

// lane is where the placements of some products wait. While busy, one
// caller (the leader) is placing a batch; the placements that arrive
// meanwhile queue, and when the batch is done the earliest of them leads
// the next batch, which is all of them (up to BatchMax). Nothing waits on
// a timer: a lone order leads a batch of one at once, in its own goroutine.
type lane struct {
	mu    sync.Mutex
	busy  bool
	queue []*waiter
	_     [40]byte // keeps lanes on their own cache lines
}

// waiter is one caller's placement in a lane.
type waiter struct {
	p   *apiperf.OrderPlacement
	ctx context.Context
	// queued is when the placement started to wait; zero for a leader
	// that found its lane idle.
	queued time.Time
	// batch is handed to the waiter that is to lead it, with wake.
	batch []*waiter
	// wake says the placement was settled (false) or is to lead batch
	// (true).
	wake chan bool
}

// New wraps store.
func New(store apiperf.OrderStore, opts Options) (*Pipeline, error) {
	opts.Lanes = max(opts.Lanes, 1)
	if opts.BatchMax <= 0 {
		opts.BatchMax = 128
	}
	if opts.QueueMax <= 0 {
		opts.QueueMax = 1024
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	pl := &Pipeline{OrderStore: store, opts: opts, lanes: make([]lane, opts.Lanes), metrics: m}
	pl.waiters.New = func() any { return &waiter{wake: make(chan bool, 1)} }
	return pl, nil
}

// Waiting is how many placements wait in a queue, over every lane.
func (pl *Pipeline) Waiting() int {
	n := 0
	for i := range pl.lanes {
		l := &pl.lanes[i]
		l.mu.Lock()
		n += len(l.queue)
		l.mu.Unlock()
	}
	return n
}

// laneOf spreads product ids over the lanes.
func (pl *Pipeline) laneOf(productID int64) *lane {
	h := uint64(productID) * 0x9e3779b97f4a7c15
	return &pl.lanes[(h>>32)%uint64(len(pl.lanes))]
}

// PlaceOrders places one order in the next batch of its product's lane and
// returns when the batch is settled. A call with several placements is
// already a batch and goes to the store as it is.
func (pl *Pipeline) PlaceOrders(ctx context.Context, batch []*apiperf.OrderPlacement) {
	if len(batch) != 1 {
		pl.OrderStore.PlaceOrders(ctx, batch)
		return
	}
	l := pl.laneOf(batch[0].In.ProductID)
	w := pl.waiters.Get().(*waiter)
	w.p, w.ctx = batch[0], ctx
	defer func() {
		*w = waiter{wake: w.wake}
		pl.waiters.Put(w)
	}()

	l.mu.Lock()
	if !l.busy {
		l.busy = true
		l.mu.Unlock()
		pl.lead(l, []*waiter{w})
		return
	}
	if len(l.queue) >= pl.opts.QueueMax {
		l.mu.Unlock()
		pl.metrics.queueFull.Inc()
		w.p.Err = &apiperf.Error{Code: apiperf.EUNAVAILABLE,
			Message: fmt.Sprintf("too many orders are waiting to be placed (%d); retry", pl.opts.QueueMax)}
		return
	}
	w.queued = time.Now()
	l.queue = append(l.queue, w)
	l.mu.Unlock()

	var lead bool
	select {
	case lead = <-w.wake:
	case <-ctx.Done():
		l.mu.Lock()
		if i := slices.Index(l.queue, w); i >= 0 {
			l.queue = slices.Delete(l.queue, i, i+1)
			l.mu.Unlock()
			w.p.Err = &apiperf.Error{Code: apiperf.EUNAVAILABLE, Err: ctx.Err(),
				Message: "the request ended before its order was placed; nothing was stored"}
			return
		}
		l.mu.Unlock()
		// Already in a batch: its outcome is this placement's, and the
		// batch may have to be led.
		lead = <-w.wake
	}
	if lead {
		pl.lead(l, w.batch)
	}
}

// lead places batch, whose first waiter is the caller's own, hands the lane
// to the next batch's leader, and tells the others in batch their outcome.
// The cache is invalidated after the hand-off, so that the next batch does
// not wait for it, but before anyone in batch is answered.
//
// If placing the batch panics, the panic goes on to the leader's caller,
// but the lane is handed on all the same and the others in batch are
// answered as unknown, so that nobody waits for a batch that will never
// be settled.
func (pl *Pipeline) lead(l *lane, batch []*waiter) {
	handed, settled := false, false
	defer func() {
		if settled {
			return
		}
		if !handed {
			pl.handOver(l)
		}
		for _, w := range batch[1:] {
			w.p.Err, w.p.StockMayHaveChanged, w.p.Invalidated = errPanicked, true, false
			w.wake <- false
		}
	}()
	ctx, ps := pl.run(batch)
	pl.handOver(l)
	handed = true
	if pl.opts.Invalidate != nil {
		pl.invalidate(ctx, ps)
	}
	settled = true
	for _, w := range batch[1:] {
		w.wake <- false
	}
}

// errPanicked answers the orders of a batch whose placement panicked:
// whether it committed is unknown.
var errPanicked = &apiperf.Error{Code: apiperf.EINTERNAL,
	Message: "the order's outcome is unknown; retry with the same Idempotency-Key to learn it"}

// handOver wakes the leader of the lane's next batch, or leaves the lane
// idle when nothing waits.
func (pl *Pipeline) handOver(l *lane) {
	l.mu.Lock()
	var next []*waiter
	if n := min(len(l.queue), pl.opts.BatchMax); n > 0 {
		next = slices.Clone(l.queue[:n])
		l.queue = append(l.queue[:0], l.queue[n:]...)
	} else {
		l.busy = false
	}
	l.mu.Unlock()
	if next != nil {
		next[0].batch = next
		next[0].wake <- true
	}
}

// run places batch in one call of the store. If the whole batch failed
// without anything being committed, each placement is tried again on its
// own, so that one order's trouble never fails the others. It returns the
// placements and the context they were placed on.
func (pl *Pipeline) run(batch []*waiter) (context.Context, []*apiperf.OrderPlacement) {
	start := time.Now()
	ps := make([]*apiperf.OrderPlacement, len(batch))
	for i, w := range batch {
		ps[i] = w.p
		if !w.queued.IsZero() {
			pl.metrics.queueWait.Observe(start.Sub(w.queued).Seconds())
		}
	}
	pl.metrics.batchSize.Observe(float64(len(batch)))

	ctx, release := batchContext(batch)
	pl.OrderStore.PlaceOrders(ctx, ps)
	release()
	if len(batch) > 1 && failedAsAWhole(ps) {
		pl.metrics.splits.Inc()
		pl.alone(batch)
	}
	pl.metrics.commit.Observe(time.Since(start).Seconds())
	return ctx, ps
}

// alone places each of batch's placements in a transaction of its own, in
// arrival order, on its caller's context. Once two in a row fail alone as
// the batch did for want of a database, the rest keep the batch's answer:
// one order's own trouble fails only that order, but a database that is
// down is not asked once per order.
func (pl *Pipeline) alone(batch []*waiter) {
	down := 0
	for _, w := range batch {
		if w.ctx.Err() != nil {
			continue
		}
		batchErr := w.p.Err
		pl.OrderStore.PlaceOrders(w.ctx, []*apiperf.OrderPlacement{w.p})
		if failedAsAWhole([]*apiperf.OrderPlacement{w.p}) && apiperf.ErrorCode(w.p.Err) == apiperf.EUNAVAILABLE &&
			apiperf.ErrorCode(batchErr) == apiperf.EUNAVAILABLE {
			if down++; down == 2 {
				return
			}
		} else {
			down = 0
		}
	}
}

// failedAsAWhole reports that no placement of ps was decided and none may
// have changed stock: the store failed before its COMMIT, or learned that
// the COMMIT did not happen. Such placements may safely be placed again.
func failedAsAWhole(ps []*apiperf.OrderPlacement) bool {
	for _, p := range ps {
		if p.Err == nil || p.Stored != nil || p.StockMayHaveChanged {
			return false
		}
		switch apiperf.ErrorCode(p.Err) {
		case apiperf.EUNAVAILABLE, apiperf.EINPROGRESS, apiperf.EINTERNAL:
		default:
			return false
		}
	}
	return true
}

// invalidate calls Invalidate once with every product whose stock ps may
// have changed.
func (pl *Pipeline) invalidate(ctx context.Context, ps []*apiperf.OrderPlacement) {
	var ids []int64
	for _, p := range ps {
		if p.StockMayHaveChanged && !slices.Contains(ids, p.In.ProductID) {
			ids = append(ids, p.In.ProductID)
		}
	}
	if len(ids) == 0 {
		return
	}
	pl.opts.Invalidate(context.WithoutCancel(ctx), ids)
	for _, p := range ps {
		if p.StockMayHaveChanged {
			p.Invalidated = true
		}
	}
}

// batchContext is the context a batch is placed on: a lone caller's own,
// or one that ends when every caller's context has ended (the store then
// still waits a grace period for a COMMIT already sent). release frees it.
func batchContext(batch []*waiter) (ctx context.Context, release func()) {
	if len(batch) == 1 {
		return batch[0].ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(batch[0].ctx))
	var live atomic.Int64
	live.Store(int64(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, w := range batch {
		stops[i] = context.AfterFunc(w.ctx, func() {
			if live.Add(-1) == 0 {
				cancel(errEveryCallerGone)
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel(nil)
	}
}

var errEveryCallerGone = errors.New("every request of the batch has ended")
