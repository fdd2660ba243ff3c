package orderpipe_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/orderpipe"
	"github.com/api-perf/api-perf/storage"
)

// respond renders stored responses the way the server does in spirit: the
// order as JSON for a created order, the error's code otherwise.
func respond(o *apiperf.Order, err error) apiperf.StoredResponse {
	if err != nil {
		return apiperf.StoredResponse{Status: 400, Body: []byte(apiperf.ErrorCode(err) + ": " + apiperf.ErrorMessage(err))}
	}
	b, _ := json.Marshal(o)
	return apiperf.StoredResponse{Status: 201, Body: b}
}

// keyedPlacement is a placement of in with key; its request hash is the
// input's, so the same key with another input is another request.
func keyedPlacement(key string, in apiperf.OrderInput) *apiperf.OrderPlacement {
	k := &apiperf.IdempotencyKey{Key: key, RequestHash: sha256.Sum256(fmt.Appendf(nil, "%d:%d", in.ProductID, in.Quantity))}
	return &apiperf.OrderPlacement{In: in, Key: k, Respond: respond}
}

// TestPipeline_MixedKeyedBatch lines up, behind a held first order, one
// batch of everything a hostile client can mix into it: a key sent twice
// with the same body and once with another, a replay of a key already
// answered, an unknown product with and without a key, a total over
// MaxTotal, orders that fit one by one but not in sum, a refusal replayed,
// and an order on another product. Each placement's outcome is the one a
// serial execution in arrival order gives, and stock balances.
func TestPipeline_MixedKeyedBatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string, db *storage.DB) {
		ctx := context.Background()
		p := mustProduct(t, db, 10)
		dear, err := db.CreateProduct(ctx, apiperf.ProductInput{Name: "Dear", Price: apiperf.MaxPrice, Stock: 10})
		if err != nil {
			t.Fatal(err)
		}
		x := dear.ID
		const missing = 1 << 40
		in := func(id, q int64) apiperf.OrderInput { return apiperf.OrderInput{ProductID: id, Quantity: q} }
		ps := []*apiperf.OrderPlacement{
			0:  keyedPlacement("k0", in(p, 1)),           // alone, held: created, 9 left
			1:  keyedPlacement("k1", in(p, 4)),           // created, 5 left
			2:  keyedPlacement("k1", in(p, 4)),           // replay of 1
			3:  keyedPlacement("k1", in(p, 5)),           // same key, other body
			4:  keyedPlacement("k0", in(p, 1)),           // replay of 0
			5:  {In: in(missing, 1)},                     // no such product
			6:  keyedPlacement("k6", in(missing, 1)),     // no such product, stored
			7:  keyedPlacement("k7", in(x, 101)),         // total over MaxTotal
			8:  {In: in(p, 3)},                           // created, 2 left
			9:  keyedPlacement("k9", in(p, 3)),           // fits alone, not after 8: refused, stored
			10: {In: in(p, 2)},                           // created, 0 left
			11: keyedPlacement("k9", in(p, 3)),           // replay of 9's refusal
			12: keyedPlacement("k12", in(x, 1)),          // created on the other product
			13: keyedPlacement("k1", in(p, 4)),           // replay of 1 again
			14: {In: in(p, apiperf.MaxQuantity+1)},       // invalid quantity
			15: keyedPlacement("k15", in(p, 1)),          // sold out: refused
			16: keyedPlacement("k16", in(x, 100)),        // exactly MaxTotal's bound: refused for stock, not total
			17: keyedPlacement("k17", in(x, 9)),          // created, 0 left on x
			18: keyedPlacement("k7", in(x, 101)),         // replay of 7's refusal
			19: keyedPlacement("k0", in(p+1_000_000, 1)), // k0 with another body
		}
		g := newGate(db)
		pl := mustPipeline(t, g, orderpipe.Options{})
		wait := lineUp(t, pl, g, ctx, ps)
		close(g.open)
		wait()

		if n := len(g.calls()); n != 2 {
			t.Fatalf("%d calls of the store, want 2 (the held order, then one batch): %v", n, g.calls())
		}
		type want struct {
			code     string
			created  bool
			replayOf int // index of the placement whose stored response is replayed; -1 for none
		}
		wants := []want{
			0: {"", true, -1}, 1: {"", true, -1}, 2: {"", false, 1}, 3: {apiperf.EMISMATCH, false, -1},
			4: {"", false, 0}, 5: {apiperf.ENOTFOUND, false, -1}, 6: {apiperf.ENOTFOUND, false, -1},
			7: {apiperf.EINVALID, false, -1}, 8: {"", true, -1}, 9: {apiperf.ECONFLICT, false, -1},
			10: {"", true, -1}, 11: {"", false, 9}, 12: {"", true, -1}, 13: {"", false, 1},
			14: {apiperf.EINVALID, false, -1}, 15: {apiperf.ECONFLICT, false, -1}, 16: {apiperf.ECONFLICT, false, -1},
			17: {"", true, -1}, 18: {"", false, 7}, 19: {apiperf.EMISMATCH, false, -1},
		}
		for i, w := range wants {
			p := ps[i]
			if got := apiperf.ErrorCode(p.Err); got != w.code {
				t.Errorf("placement %d (%+v): code %q (%v), want %q", i, p.In, got, p.Err, w.code)
			}
			if (p.Order != nil) != w.created {
				t.Errorf("placement %d: order %+v, want created %v", i, p.Order, w.created)
			}
			if w.replayOf >= 0 {
				orig := ps[w.replayOf]
				if !p.Replayed || p.Stored == nil || orig.Stored == nil || !bytes.Equal(p.Stored.Body, orig.Stored.Body) {
					t.Errorf("placement %d: replayed %v, stored %+v, want placement %d's %+v", i, p.Replayed, p.Stored, w.replayOf, orig.Stored)
				}
			} else if p.Replayed {
				t.Errorf("placement %d: replayed %+v", i, p.Stored)
			}
			if p.Key != nil && w.code != apiperf.EMISMATCH && p.Stored == nil {
				t.Errorf("placement %d: keyed, decided, and nothing stored", i)
			}
		}
		if s, n := stockOf(t, db, p), ordersOf(t, db, p); s != 0 || n != 4 {
			t.Errorf("product %d: stock %d, %d orders; want 0 and 4", p, s, n)
		}
		if s, n := stockOf(t, db, x), ordersOf(t, db, x); s != 0 || n != 2 {
			t.Errorf("product %d: stock %d, %d orders; want 0 and 2", x, s, n)
		}
	})
}

// holdStore holds every batch of more than one placement until release is
// closed, after saying so on entered.
type holdStore struct {
	apiperf.OrderStore
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	ctx     context.Context // the held batch's, set before entered closes
}

func (h *holdStore) PlaceOrders(ctx context.Context, batch []*apiperf.OrderPlacement) {
	if len(batch) > 1 {
		h.once.Do(func() {
			h.ctx = ctx
			close(h.entered)
		})
		<-h.release
	}
	h.OrderStore.PlaceOrders(ctx, batch)
}

// TestPipeline_CallerGoneWhileItsBatchRuns ends the context of one caller
// whose order is already in a running batch: it still gets its order's
// true outcome (created), as do the others. When every caller of a batch
// is gone before the store runs it, nothing is stored and each is told so.
func TestPipeline_CallerGoneWhileItsBatchRuns(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string, db *storage.DB) {
		id := mustProduct(t, db, 100)
		for _, everyone := range []bool{false, true} {
			h := &holdStore{OrderStore: db, entered: make(chan struct{}), release: make(chan struct{})}
			g := newGate(h)
			pl := mustPipeline(t, g, orderpipe.Options{})
			ctxs := make([]context.Context, 4)
			cancels := make([]context.CancelFunc, 4)
			ps := make([]*apiperf.OrderPlacement, 4)
			for i := range ps {
				ctxs[i], cancels[i] = context.WithCancel(context.Background())
				ps[i] = &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 1}}
			}
			var wg sync.WaitGroup
			for i, p := range ps {
				wg.Go(func() { pl.PlaceOrders(ctxs[i], []*apiperf.OrderPlacement{p}) })
				waitFor(t, fmt.Sprintf("placement %d to queue", i), func() bool {
					if i == 0 {
						return len(g.calls()) == 1
					}
					return pl.Waiting() == i
				})
			}
			before := stockOf(t, db, id)
			close(g.open)
			<-h.entered // the batch of three is in the store, held
			if everyone {
				for _, c := range cancels[1:] {
					c()
				}
				// The batch's context ends once the pipeline has seen
				// every caller go, which it hears of asynchronously.
				waitFor(t, "the batch's context to end", func() bool { return h.ctx.Err() != nil })
			} else {
				cancels[2]()
			}
			close(h.release)
			wg.Wait()
			for _, c := range cancels {
				c()
			}
			for i, p := range ps {
				gone := i > 0 && (everyone || i == 2)
				switch {
				case !gone && (p.Err != nil || p.Order == nil):
					t.Errorf("everyone gone %v: placement %d: %v", everyone, i, p.Err)
				case gone && everyone && (apiperf.ErrorCode(p.Err) != apiperf.EUNAVAILABLE || p.StockMayHaveChanged):
					t.Errorf("everyone gone: placement %d: %+v, want unavailable and nothing stored", i, p)
				case gone && !everyone && (p.Err != nil || p.Order == nil):
					t.Errorf("placement %d, gone while its batch ran: %v, want its order", i, p.Err)
				}
			}
			sold := int64(4)
			if everyone {
				sold = 1
			}
			if s := stockOf(t, db, id); s != before-sold {
				t.Errorf("everyone gone %v: stock %d, want %d", everyone, s, before-sold)
			}
		}
		if s, n := stockOf(t, db, id), ordersOf(t, db, id); s+int64(n) != 100 {
			t.Errorf("stock %d + %d orders != 100", s, n)
		}
	})
}

// panicStore panics on any batch holding a quantity of 13.
type panicStore struct{ apiperf.OrderStore }

func (s panicStore) PlaceOrders(ctx context.Context, batch []*apiperf.OrderPlacement) {
	for _, p := range batch {
		if p.In.Quantity == 13 {
			panic("store failure")
		}
	}
	s.OrderStore.PlaceOrders(ctx, batch)
}

// TestPipeline_PanicDoesNotStallTheLane makes the store panic while it
// places a batch: the panic reaches the leader's caller (the server's
// recovery answers it 500), the others of its batch are answered rather
// than left waiting, and the lane goes on placing the orders queued behind
// it and any that come later.
func TestPipeline_PanicDoesNotStallTheLane(t *testing.T) {
	db := openDB(t, "sqlite", "")
	id := mustProduct(t, db, 100)
	g := newGate(panicStore{db})
	pl := mustPipeline(t, g, orderpipe.Options{BatchMax: 3})
	qs := []int64{1, 13, 2, 3, 4, 5}
	ps := make([]*apiperf.OrderPlacement, len(qs))
	panicked := make([]any, len(qs))
	var wg sync.WaitGroup
	for i, q := range qs {
		ps[i] = &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: q}}
		wg.Go(func() {
			defer func() { panicked[i] = recover() }()
			pl.PlaceOrders(context.Background(), []*apiperf.OrderPlacement{ps[i]})
		})
		waitFor(t, fmt.Sprintf("placement %d to queue", i), func() bool {
			if i == 0 {
				return len(g.calls()) == 1
			}
			return pl.Waiting() == i
		})
	}
	close(g.open)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitFor(t, "every placement to be answered", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	// Batches: [1], [13 2 3] (panics, led by 13), [4 5].
	for i, p := range ps {
		switch q := p.In.Quantity; {
		case q == 13:
			if panicked[i] == nil {
				t.Errorf("the batch's leader did not see the panic: %+v", p)
			}
		case q == 2 || q == 3:
			if panicked[i] != nil || p.Err == nil || p.Order != nil || !p.StockMayHaveChanged {
				t.Errorf("order of %d in the panicked batch: panic %v, %+v; want an error that may have changed stock", q, panicked[i], p)
			}
		default:
			if panicked[i] != nil || p.Err != nil {
				t.Errorf("order of %d: panic %v, err %v", q, panicked[i], p.Err)
			}
		}
	}
	later := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: id, Quantity: 1}}
	pl.PlaceOrders(context.Background(), []*apiperf.OrderPlacement{later})
	if later.Err != nil || pl.Waiting() != 0 {
		t.Fatalf("an order after the panic: %v, %d waiting", later.Err, pl.Waiting())
	}
	if s := stockOf(t, db, id); s != 100-1-4-5-1 {
		t.Fatalf("stock %d, want %d", s, 100-1-4-5-1)
	}
}

// TestPipeline_KeyInProgressElsewhere puts, on MariaDB, a keyed order in a
// batch while another session holds its key's record uncommitted (a request
// with that key still running in another process): the batch cannot finish
// in time, and is placed again order by order, so only the keyed order is
// answered "in progress" and the orders around it are created.
func TestPipeline_KeyInProgressElsewhere(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: dsn, MaxOpenConns: 16, QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id := mustProduct(t, db, 100)
	other, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // the other request never finishes
	if _, err := tx.Exec(`INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at)
		VALUES (?, 'busy', ?, 201, '{}', NOW(6), NOW(6) + INTERVAL 1 DAY)`, make([]byte, 32), make([]byte, 32)); err != nil {
		t.Fatal(err)
	}

	g := newGate(db)
	pl := mustPipeline(t, g, orderpipe.Options{})
	in := func(q int64) apiperf.OrderInput { return apiperf.OrderInput{ProductID: id, Quantity: q} }
	ps := []*apiperf.OrderPlacement{{In: in(1)}, {In: in(2)}, keyedPlacement("busy", in(3)), {In: in(4)}}
	wait := lineUp(t, pl, g, context.Background(), ps)
	close(g.open)
	wait()
	for i, p := range ps {
		if i == 2 {
			if apiperf.ErrorCode(p.Err) != apiperf.EINPROGRESS || p.Order != nil || p.StockMayHaveChanged {
				t.Errorf("the order whose key is held elsewhere: %+v, want in progress", p)
			}
		} else if p.Err != nil || p.Order == nil {
			t.Errorf("order %d beside it: %v", i, p.Err)
		}
	}
	if s, n := stockOf(t, db, id), ordersOf(t, db, id); s != 100-1-2-4 || n != 3 {
		t.Errorf("stock %d, %d orders; want %d and 3", s, n, 100-1-2-4)
	}
}
