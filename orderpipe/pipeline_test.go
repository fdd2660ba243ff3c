package orderpipe_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/orderpipe"
	"github.com/api-perf/api-perf/storage"
)

func openDB(tb testing.TB, backend string, dsn string) *storage.DB {
	tb.Helper()
	cfg := storage.Config{DataDir: tb.TempDir()}
	if backend == "mysql" {
		cfg = storage.Config{MySQLDSN: dsn, MaxOpenConns: 16}
	}
	db, err := storage.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func eachBackend(t *testing.T, fn func(t *testing.T, backend string, db *storage.DB)) {
	for _, b := range testenv.Backends() {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			dsn := ""
			if b == "mysql" {
				dsn = testenv.MySQLDSN(t)
			}
			fn(t, b, openDB(t, b, dsn))
		})
	}
}

func mustPipeline(tb testing.TB, store apiperf.OrderStore, opts orderpipe.Options) *orderpipe.Pipeline {
	tb.Helper()
	pl, err := orderpipe.New(store, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return pl
}

func mustProduct(tb testing.TB, db *storage.DB, stock int64) int64 {
	tb.Helper()
	p, err := db.CreateProduct(context.Background(), apiperf.ProductInput{Name: "Test Product", Price: 100, Stock: stock})
	if err != nil {
		tb.Fatal(err)
	}
	return p.ID
}

func stockOf(tb testing.TB, db *storage.DB, id int64) int64 {
	tb.Helper()
	p, err := db.Product(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return p.Stock
}

func ordersOf(tb testing.TB, db *storage.DB, id int64) int {
	tb.Helper()
	os, err := db.Orders(context.Background(), apiperf.OrderFilter{ProductID: id, Page: apiperf.Page{Limit: 10_000}})
	if err != nil {
		tb.Fatal(err)
	}
	return len(os)
}

// histogram reads a histogram's sample count and sum from reg.
func histogram(tb testing.TB, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	tb.Fatalf("no metric %s", name)
	return 0, 0
}

func counter(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	tb.Fatalf("no metric %s", name)
	return 0
}

// oversell sends 400 concurrent single-unit orders for stocks of 50, 20 and
// 5 through the pipelines (one per process sharing the database) and checks
// that exactly the stock was sold and every other order was refused 409.
func oversell(t *testing.T, dbs []*storage.DB, pls []*orderpipe.Pipeline) {
	ctx := context.Background()
	stocks := []int64{50, 20, 5}
	var ids []int64
	for _, s := range stocks {
		ids = append(ids, mustProduct(t, dbs[0], s))
	}
	var wg sync.WaitGroup
	var ok, conflict [3]atomic.Int64
	start := make(chan struct{})
	for i := range 400 {
		wg.Go(func() {
			<-start
			k := [4]int{0, 1, 0, 2}[i%4] // 200, 100 and 100 orders
			_, err := apiperf.PlaceOrder(ctx, pls[i%len(pls)], apiperf.OrderInput{ProductID: ids[k], Quantity: 1})
			switch apiperf.ErrorCode(err) {
			case "":
				ok[k].Add(1)
			case apiperf.ECONFLICT:
				conflict[k].Add(1)
			default:
				t.Errorf("order: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	for k, id := range ids {
		if ok[k].Load() != stocks[k] || conflict[k].Load() != []int64{200, 100, 100}[k]-stocks[k] {
			t.Errorf("product %d (stock %d): %d created, %d refused", k, stocks[k], ok[k].Load(), conflict[k].Load())
		}
		if s, n := stockOf(t, dbs[0], id), ordersOf(t, dbs[0], id); s != 0 || int64(n) != stocks[k] {
			t.Errorf("product %d: stock left %d, %d order rows, want 0 and %d", k, s, n, stocks[k])
		}
	}
}

// TestPipeline_Oversell is the stock invariant with batching on: 400
// concurrent orders, exactly the stock sold, the rest refused, and the
// orders did share transactions.
func TestPipeline_Oversell(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string, db *storage.DB) {
		reg := prometheus.NewRegistry()
		pl := mustPipeline(t, db, orderpipe.Options{Lanes: 4, Registerer: reg})
		oversell(t, []*storage.DB{db}, []*orderpipe.Pipeline{pl})
		batches, orders := histogram(t, reg, "apiperf_order_batch_size")
		t.Logf("%v orders in %d batches", orders, batches)
		if orders != 400 || batches >= 400 {
			t.Fatalf("%v orders in %d batches: want 400 in fewer batches", orders, batches)
		}
	})
}

// TestPipeline_Oversell_ThreeProcesses runs the oversell through three
// stores and pipelines on one MariaDB database, as three replicas of the
// server would: their batches meet on the product rows' locks.
func TestPipeline_Oversell_ThreeProcesses(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	var dbs []*storage.DB
	var pls []*orderpipe.Pipeline
	for range 3 {
		db := openDB(t, "mysql", dsn)
		dbs = append(dbs, db)
		pls = append(pls, mustPipeline(t, db, orderpipe.Options{Lanes: 4}))
	}
	oversell(t, dbs, pls)
}

// gate is a store that records the batches it is given and holds the first
// one until opened, so that a test can line orders up behind it.
type gate struct {
	apiperf.OrderStore
	open    chan struct{}
	mu      sync.Mutex
	batches [][]apiperf.OrderInput
	fail    func(batch []*apiperf.OrderPlacement) bool
}

func newGate(store apiperf.OrderStore) *gate {
	return &gate{OrderStore: store, open: make(chan struct{})}
}

func (g *gate) PlaceOrders(ctx context.Context, batch []*apiperf.OrderPlacement) {
	g.mu.Lock()
	first := len(g.batches) == 0
	var ins []apiperf.OrderInput
	for _, p := range batch {
		ins = append(ins, p.In)
	}
	g.batches = append(g.batches, ins)
	g.mu.Unlock()
	if first {
		<-g.open
	}
	if g.fail != nil && g.fail(batch) {
		for _, p := range batch {
			p.Err = &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the database is unavailable"}
		}
		return
	}
	g.OrderStore.PlaceOrders(ctx, batch)
}

func (g *gate) calls() [][]apiperf.OrderInput {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.batches)
}

// lineUp starts one placement per input, in order, each only once the one
// before it is queued behind the gate's first batch, and returns a wait
// for them all.
func lineUp(t *testing.T, pl *orderpipe.Pipeline, g *gate, ctx context.Context, ps []*apiperf.OrderPlacement) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { pl.PlaceOrders(ctx, []*apiperf.OrderPlacement{p}) })
		waitFor(t, fmt.Sprintf("placement %d to queue", i), func() bool {
			if i == 0 {
				return len(g.calls()) == 1
			}
			return pl.Waiting() == i
		})
	}
	return wg.Wait
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPipeline_SerialOutcome lines up orders of mixed quantities, not all of
// which fit, in a recorded arrival order: each one's outcome is the one a
// serial execution in that order gives (an order that does not fit is
// refused, and a smaller one after it may still fit), and the batches keep
// that order.
func TestPipeline_SerialOutcome(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string, db *storage.DB) {
		const stock = 100
		id := mustProduct(t, db, stock)
		other := mustProduct(t, db, 1000)
		g := newGate(db)
		pl := mustPipeline(t, g, orderpipe.Options{BatchMax: 16})
		rng := rand.New(rand.NewPCG(7, 7))
		var ps []*apiperf.OrderPlacement
		for i := range 60 {
			in := apiperf.OrderInput{ProductID: id, Quantity: int64(1 + rng.IntN(9))}
			switch {
			case i%13 == 5:
				in.ProductID = other
			case i%17 == 3:
				in.ProductID = 1 << 40 // no such product: 404 for it alone
			case i%19 == 4:
				in.Quantity = apiperf.MaxQuantity + 1 // invalid for it alone
			}
			ps = append(ps, &apiperf.OrderPlacement{In: in})
		}
		wait := lineUp(t, pl, g, context.Background(), ps)
		close(g.open)
		wait()

		left := int64(stock)
		sold := 0
		for i, p := range ps {
			var want string
			switch {
			case p.In.ProductID == other:
			case p.In.ProductID != id:
				want = apiperf.ENOTFOUND
			case p.In.Quantity > apiperf.MaxQuantity:
				want = apiperf.EINVALID
			case p.In.Quantity > left:
				want = apiperf.ECONFLICT
			default:
				left -= p.In.Quantity
				sold++
			}
			if got := apiperf.ErrorCode(p.Err); got != want {
				t.Errorf("order %d (%+v): %q (%v), serial execution gives %q", i, p.In, got, p.Err, want)
			}
			if (p.Err == nil) != (p.Order != nil) {
				t.Errorf("order %d: order %v with error %v", i, p.Order, p.Err)
			}
		}
		if s := stockOf(t, db, id); s != left || ordersOf(t, db, id) != sold {
			t.Fatalf("stock %d and %d orders, serial execution leaves %d and %d", s, ordersOf(t, db, id), left, sold)
		}
		// The first order alone, then batches of 16 in arrival order.
		var got []apiperf.OrderInput
		for i, b := range g.calls() {
			if i > 0 && len(b) > 16 || i == 0 && len(b) != 1 {
				t.Fatalf("batch %d has %d orders", i, len(b))
			}
			got = append(got, b...)
		}
		var want []apiperf.OrderInput
		for _, p := range ps {
			want = append(want, p.In)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("the store saw the orders in another order:\n got %v\nwant %v", got, want)
		}
		if n := len(g.calls()); n != 1+(59+15)/16 {
			t.Fatalf("%d batches, want %d", n, 1+(59+15)/16)
		}
	})
}

// TestPipeline_QueueFull fills a lane's queue: the next order is refused at
// once as unavailable (a 503 with Retry-After), counted, and stores nothing;
// the queued ones are placed.
func TestPipeline_QueueFull(t *testing.T) {
	db := openDB(t, "sqlite", "")
	id := mustProduct(t, db, 10)
	g := newGate(db)
	reg := prometheus.NewRegistry()
	pl := mustPipeline(t, g, orderpipe.Options{QueueMax: 2, Registerer: reg})
	var ps []*apiperf.OrderPlacement
	for range 3 {
		ps = append(ps, &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 1}})
	}
	wait := lineUp(t, pl, g, context.Background(), ps)
	refused := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 1}}
	pl.PlaceOrders(context.Background(), []*apiperf.OrderPlacement{refused})
	if apiperf.ErrorCode(refused.Err) != apiperf.EUNAVAILABLE || refused.StockMayHaveChanged || refused.Order != nil {
		t.Fatalf("the order past a full queue: %+v", refused)
	}
	if n := counter(t, reg, "apiperf_order_queue_full_total"); n != 1 {
		t.Fatalf("apiperf_order_queue_full_total = %v, want 1", n)
	}
	close(g.open)
	wait()
	for i, p := range ps {
		if p.Err != nil {
			t.Fatalf("queued order %d: %v", i, p.Err)
		}
	}
	if s := stockOf(t, db, id); s != 7 {
		t.Fatalf("stock %d, want 7", s)
	}
}

// TestPipeline_CancelWhileQueued ends a queued order's context: it leaves
// the queue unplaced, and the others are placed without it.
func TestPipeline_CancelWhileQueued(t *testing.T) {
	db := openDB(t, "sqlite", "")
	id := mustProduct(t, db, 10)
	g := newGate(db)
	pl := mustPipeline(t, g, orderpipe.Options{})
	first := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 1}}
	wait := lineUp(t, pl, g, context.Background(), []*apiperf.OrderPlacement{first})
	ctx, cancel := context.WithCancel(context.Background())
	gone := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 2}}
	done := make(chan struct{})
	go func() { pl.PlaceOrders(ctx, []*apiperf.OrderPlacement{gone}); close(done) }()
	waitFor(t, "the order to queue", func() bool { return pl.Waiting() == 1 })
	cancel()
	<-done
	if apiperf.ErrorCode(gone.Err) != apiperf.EUNAVAILABLE || pl.Waiting() != 0 {
		t.Fatalf("cancelled order: %v, %d waiting", gone.Err, pl.Waiting())
	}
	last := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 4}}
	wait2 := lineUp(t, pl, g, context.Background(), nil)
	go pl.PlaceOrders(context.Background(), []*apiperf.OrderPlacement{last})
	waitFor(t, "the last order to queue", func() bool { return pl.Waiting() == 1 })
	close(g.open)
	wait()
	wait2()
	waitFor(t, "the last order", func() bool { return pl.Waiting() == 0 && len(g.calls()) == 2 })
	waitFor(t, "the last order's outcome", func() bool { return stockOf(t, db, id) == 5 })
	if calls := g.calls(); len(calls[1]) != 1 || calls[1][0].Quantity != 4 {
		t.Fatalf("batches %v: the cancelled order was placed", calls)
	}
}

// TestPipeline_SplitFailedBatch fails a whole batch before its COMMIT: each
// order is placed again on its own, so the one that fails alone fails and
// the others are created. A batch whose orders find the database down
// alone too keeps its answer without asking once per order.
func TestPipeline_SplitFailedBatch(t *testing.T) {
	db := openDB(t, "sqlite", "")
	id := mustProduct(t, db, 100)
	g := newGate(db)
	reg := prometheus.NewRegistry()
	pl := mustPipeline(t, g, orderpipe.Options{Registerer: reg})
	// Any batch holding a quantity of 13 fails as a whole.
	g.fail = func(batch []*apiperf.OrderPlacement) bool {
		return slices.ContainsFunc(batch, func(p *apiperf.OrderPlacement) bool { return p.In.Quantity == 13 })
	}
	var ps []*apiperf.OrderPlacement
	for _, q := range []int64{1, 2, 13, 3, 4} {
		ps = append(ps, &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: q}})
	}
	wait := lineUp(t, pl, g, context.Background(), ps)
	close(g.open)
	wait()
	for _, p := range ps {
		if (p.In.Quantity == 13) != (p.Err != nil) {
			t.Fatalf("order of %d: %v", p.In.Quantity, p.Err)
		}
	}
	if s := stockOf(t, db, id); s != 90 {
		t.Fatalf("stock %d, want 90", s)
	}
	// The first order alone, the batch of four, then each of them alone.
	if n := len(g.calls()); n != 6 || counter(t, reg, "apiperf_order_batch_splits_total") != 1 {
		t.Fatalf("%d calls: %v", n, g.calls())
	}

	// Down for every order: the batch, and two orders alone.
	g2 := newGate(db)
	pl2 := mustPipeline(t, g2, orderpipe.Options{})
	g2.fail = func([]*apiperf.OrderPlacement) bool { return true }
	ps = ps[:0]
	for range 5 {
		ps = append(ps, &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 1}})
	}
	wait = lineUp(t, pl2, g2, context.Background(), ps)
	close(g2.open)
	wait()
	for _, p := range ps {
		if apiperf.ErrorCode(p.Err) != apiperf.EUNAVAILABLE {
			t.Fatalf("order while down: %v", p.Err)
		}
	}
	if n := len(g2.calls()); n != 4 {
		t.Fatalf("%d calls while down, want 4 (the first order, the batch, two orders alone): %v", n, g2.calls())
	}
}

// TestPipeline_InvalidateOncePerBatch places a batch over two products:
// Invalidate hears each product once, before the callers are answered, and
// every placement that changed stock says so.
func TestPipeline_InvalidateOncePerBatch(t *testing.T) {
	db := openDB(t, "sqlite", "")
	a, b := mustProduct(t, db, 100), mustProduct(t, db, 100)
	g := newGate(db)
	var mu sync.Mutex
	var calls [][]int64
	pl := mustPipeline(t, g, orderpipe.Options{Invalidate: func(_ context.Context, ids []int64) {
		mu.Lock()
		calls = append(calls, slices.Sorted(slices.Values(ids)))
		mu.Unlock()
	}})
	var ps []*apiperf.OrderPlacement
	for i := range 9 {
		ps = append(ps, &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: []int64{a, b, a}[i%3], Quantity: int64(1 + 100*(i/8))}})
	}
	wait := lineUp(t, pl, g, context.Background(), ps)
	close(g.open)
	wait()
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || !slices.Equal(calls[0], []int64{a}) || !slices.Equal(calls[1], []int64{a, b}) {
		t.Fatalf("Invalidate calls %v, want [[%d] [%d %d]]", calls, a, a, b)
	}
	for i, p := range ps {
		if p.Invalidated != p.StockMayHaveChanged || (p.Err == nil) != p.Invalidated {
			t.Fatalf("placement %d: err %v, stock changed %v, invalidated %v", i, p.Err, p.StockMayHaveChanged, p.Invalidated)
		}
	}
}

// TestNew_MetricConflict: a collector of another shape under one of the
// pipeline's metric names is New's error.
func TestNew_MetricConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiperf_order_queue_full_total", Help: "another"}))
	if _, err := orderpipe.New(nil, orderpipe.Options{Registerer: reg}); err == nil {
		t.Fatal("New accepted a conflicting apiperf_order_queue_full_total")
	}
}
