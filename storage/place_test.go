package storage_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/storage"
)

// respond renders stored responses the way a caller might: the order as
// JSON for a created order, the error's code and message otherwise.
func respond(o *apiperf.Order, err error) apiperf.StoredResponse {
	if err != nil {
		return apiperf.StoredResponse{Status: 400, Body: []byte(apiperf.ErrorCode(err) + ": " + apiperf.ErrorMessage(err))}
	}
	b, _ := json.Marshal(o)
	return apiperf.StoredResponse{Status: 201, Body: b}
}

// keyed is a placement of in with key in the scope of client.
func keyed(client byte, key string, in apiperf.OrderInput) *apiperf.OrderPlacement {
	k := &apiperf.IdempotencyKey{Key: key, RequestHash: sha256.Sum256(fmt.Appendf(nil, "%d:%d", in.ProductID, in.Quantity))}
	k.Scope[0] = client
	return &apiperf.OrderPlacement{In: in, Key: k, Respond: respond}
}

func place(t testing.TB, db *storage.DB, ps ...*apiperf.OrderPlacement) {
	t.Helper()
	db.PlaceOrders(context.Background(), ps)
}

func stockOf(t testing.TB, db *storage.DB, id int64) int64 {
	t.Helper()
	p, err := db.Product(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p.Stock
}

func countRows(t testing.TB, db *storage.DB, table string) int {
	t.Helper()
	var n int
	if err := db.SQL().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// created checks that p created an order of its input and stored it.
func created(t testing.TB, p *apiperf.OrderPlacement) *apiperf.Order {
	t.Helper()
	if p.Err != nil || p.Order == nil || p.Replayed {
		t.Fatalf("placement of %+v: order %+v, err %v, replayed %v", p.In, p.Order, p.Err, p.Replayed)
	}
	if p.Order.ProductID != p.In.ProductID || p.Order.Quantity != p.In.Quantity || p.Order.ID == 0 || p.Order.CreatedAt.IsZero() {
		t.Fatalf("created %+v for %+v", p.Order, p.In)
	}
	if !p.StockMayHaveChanged {
		t.Fatal("a created order does not report its stock change")
	}
	if p.Key != nil {
		var o struct{ ID int64 }
		if p.Stored == nil || p.Stored.Status != 201 || json.Unmarshal(p.Stored.Body, &o) != nil || o.ID != p.Order.ID {
			t.Fatalf("stored %+v for order %d", p.Stored, p.Order.ID)
		}
	}
	return p.Order
}

func TestOrderStore_PlaceOrders_ResponseIsTheStoredOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		p := mustProduct(t, db, 1999, 10)
		pl := keyed(1, "k", apiperf.OrderInput{ProductID: p.ID, Quantity: 3})
		place(t, db, pl)
		o := created(t, pl)
		got, err := db.Order(context.Background(), o.ID)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(o)
		b, _ := json.Marshal(got)
		if string(a) != string(b) || string(pl.Stored.Body) != string(b) {
			t.Fatalf("answered %s, stored %s, the database holds %s", a, pl.Stored.Body, b)
		}
		if o.Total != 5997 || o.Status != apiperf.StatusPending {
			t.Fatalf("order %+v", o)
		}
	})
}

func TestOrderStore_PlaceOrders_Idempotent(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		a := mustProduct(t, db, 100, 10)
		b := mustProduct(t, db, 300, 10)

		first := keyed(1, "order-1", apiperf.OrderInput{ProductID: a.ID, Quantity: 2})
		place(t, db, first)
		o := created(t, first)
		t.Run("Replay", func(t *testing.T) {
			again := keyed(1, "order-1", apiperf.OrderInput{ProductID: a.ID, Quantity: 2})
			place(t, db, again)
			if !again.Replayed || again.Order != nil || again.Err != nil || string(again.Stored.Body) != string(first.Stored.Body) {
				t.Fatalf("replay: %+v", again)
			}
			if again.StockMayHaveChanged || stockOf(t, db, a.ID) != 8 {
				t.Fatal("a replay moved stock")
			}
		})
		t.Run("Mismatch", func(t *testing.T) {
			other := keyed(1, "order-1", apiperf.OrderInput{ProductID: a.ID, Quantity: 3})
			place(t, db, other)
			wantCode(t, other.Err, apiperf.EMISMATCH)
			if stockOf(t, db, a.ID) != 8 {
				t.Fatal("a refused key moved stock")
			}
		})
		// Issue 10, reproduction 1: keys differing only in case were one key
		// on orders and two on the records, and the second request got the
		// first one's order.
		t.Run("KeysAreCaseSensitive", func(t *testing.T) {
			lower := keyed(1, "order-abc", apiperf.OrderInput{ProductID: a.ID, Quantity: 1})
			upper := keyed(1, "ORDER-ABC", apiperf.OrderInput{ProductID: b.ID, Quantity: 2})
			place(t, db, lower)
			place(t, db, upper)
			lo, up := created(t, lower), created(t, upper)
			if lo.ID == up.ID || up.ProductID != b.ID || up.Quantity != 2 {
				t.Fatalf("order-abc -> %+v, ORDER-ABC -> %+v", lo, up)
			}
		})
		// Reproduction 2: two clients that pick the same key and body each
		// get their own order.
		t.Run("KeysAreScopedToTheClient", func(t *testing.T) {
			c1 := keyed(1, "shared-key", apiperf.OrderInput{ProductID: b.ID, Quantity: 1})
			c2 := keyed(2, "shared-key", apiperf.OrderInput{ProductID: b.ID, Quantity: 1})
			place(t, db, c1)
			place(t, db, c2)
			if created(t, c1).ID == created(t, c2).ID {
				t.Fatal("two clients share one order")
			}
		})
		// Reproduction 3: after expiry, the key places a new order. The
		// record is expired but not purged, so the store itself must
		// treat it as absent.
		t.Run("ExpiredKeyPlacesANewOrder", func(t *testing.T) {
			expire(t, db, "order-1")
			again := keyed(1, "order-1", apiperf.OrderInput{ProductID: a.ID, Quantity: 3})
			place(t, db, again)
			if created(t, again).ID == o.ID {
				t.Fatal("the expired key answered with the old order")
			}
			replay := keyed(1, "order-1", apiperf.OrderInput{ProductID: a.ID, Quantity: 3})
			place(t, db, replay)
			if !replay.Replayed || string(replay.Stored.Body) != string(again.Stored.Body) {
				t.Fatalf("the new record is not the one replayed: %+v", replay)
			}
			expire(t, db, "order-abc")
			n, err := db.PurgeIdempotencyRecords(ctx)
			if err != nil || n != 1 {
				t.Fatalf("purged %d (%v), want the 1 expired record", n, err)
			}
		})
		t.Run("RefusalsAreStored", func(t *testing.T) {
			gone := keyed(1, "no-such-product", apiperf.OrderInput{ProductID: 1 << 40, Quantity: 1})
			place(t, db, gone)
			wantCode(t, gone.Err, apiperf.ENOTFOUND)
			short := keyed(1, "too-many", apiperf.OrderInput{ProductID: a.ID, Quantity: 100})
			place(t, db, short)
			wantCode(t, short.Err, apiperf.ECONFLICT)
			if short.Stored == nil || short.Stored.Status != 400 || short.StockMayHaveChanged {
				t.Fatalf("refusal: %+v", short)
			}
			again := keyed(1, "too-many", apiperf.OrderInput{ProductID: a.ID, Quantity: 100})
			place(t, db, again)
			if !again.Replayed || string(again.Stored.Body) != string(short.Stored.Body) {
				t.Fatalf("the stored refusal is not replayed: %+v", again)
			}
		})
	})
}

// expire moves the expiry of every record with key into the past.
func expire(t testing.TB, db *storage.DB, key string) {
	t.Helper()
	past := "'2000-01-01 00:00:00'"
	if db.Dialect() == "sqlite" {
		past = "'2000-01-01T00:00:00.000Z'"
	}
	if _, err := db.SQL().Exec("UPDATE idempotency_records SET expires_at = "+past+" WHERE idem_key = ?", key); err != nil {
		t.Fatal(err)
	}
}

// TestOrderStore_PlaceOrders_ConcurrentKey sends one key twenty times at
// once: one order, and every request gets its response.
func TestOrderStore_PlaceOrders_ConcurrentKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		p := mustProduct(t, db, 100, 100)
		ps := make([]*apiperf.OrderPlacement, 20)
		var wg sync.WaitGroup
		for i := range ps {
			ps[i] = keyed(1, "same", apiperf.OrderInput{ProductID: p.ID, Quantity: 2})
			wg.Add(1)
			go func() {
				defer wg.Done()
				place(t, db, ps[i])
			}()
		}
		wg.Wait()
		createdN := 0
		for _, pl := range ps {
			if pl.Err != nil {
				t.Fatalf("placement failed: %v", pl.Err)
			}
			if !pl.Replayed {
				createdN++
			}
			if string(pl.Stored.Body) != string(ps[0].Stored.Body) {
				t.Fatalf("responses differ: %s and %s", pl.Stored.Body, ps[0].Stored.Body)
			}
		}
		if createdN != 1 || countRows(t, db, "orders") != 1 || stockOf(t, db, p.ID) != 98 {
			t.Fatalf("%d created, %d orders, stock %d; want 1, 1, 98", createdN, countRows(t, db, "orders"), stockOf(t, db, p.ID))
		}
	})
}

// TestOrderStore_PlaceOrders_TotalTooLarge is reproduction 8: a total over
// DECIMAL(14,2) made MySQL fail the INSERT (a 500); it is a refusal naming
// the quantity now, decided before any write.
func TestOrderStore_PlaceOrders_TotalTooLarge(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		p := mustProduct(t, db, apiperf.MaxPrice, apiperf.MaxQuantity)
		pl := keyed(1, "big", apiperf.OrderInput{ProductID: p.ID, Quantity: 101})
		place(t, db, pl)
		wantCode(t, pl.Err, apiperf.EINVALID)
		var e *apiperf.Error
		if !errors.As(pl.Err, &e) || len(e.Fields) != 1 || e.Fields[0].Field != "quantity" || !strings.Contains(e.Fields[0].Message, "at most 100 units") {
			t.Fatalf("refusal %#v", pl.Err)
		}
		if stockOf(t, db, p.ID) != apiperf.MaxQuantity || countRows(t, db, "orders") != 0 {
			t.Fatal("a refused order moved stock")
		}
		ok := keyed(1, "largest", apiperf.OrderInput{ProductID: p.ID, Quantity: 100})
		place(t, db, ok)
		if o := created(t, ok); o.Total != apiperf.MaxPrice*100 {
			t.Fatalf("total %s", o.Total)
		}
	})
}

// TestOrderStore_PlaceOrders_Batch places several orders in one call: each
// is decided on its own, in order, on the stock the earlier ones left.
func TestOrderStore_PlaceOrders_Batch(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		a := mustProduct(t, db, 100, 3)
		c := mustProduct(t, db, 250, 5)
		big := mustProduct(t, db, apiperf.MaxPrice, 1000)
		batch := []*apiperf.OrderPlacement{
			{In: apiperf.OrderInput{ProductID: a.ID, Quantity: 2}},
			{In: apiperf.OrderInput{ProductID: a.ID, Quantity: 2}},
			{In: apiperf.OrderInput{ProductID: 1 << 40, Quantity: 1}},
			keyed(1, "k1", apiperf.OrderInput{ProductID: c.ID, Quantity: 1}),
			keyed(1, "k1", apiperf.OrderInput{ProductID: c.ID, Quantity: 1}),
			keyed(1, "k2", apiperf.OrderInput{ProductID: big.ID, Quantity: 500}),
			{In: apiperf.OrderInput{ProductID: a.ID, Quantity: 1}},
		}
		place(t, db, batch...)
		created(t, batch[0])
		wantCode(t, batch[1].Err, apiperf.ECONFLICT)
		wantCode(t, batch[2].Err, apiperf.ENOTFOUND)
		o := created(t, batch[3])
		if !batch[4].Replayed || string(batch[4].Stored.Body) != string(batch[3].Stored.Body) {
			t.Fatalf("the second placement with k1 is not the first one's replay: %+v", batch[4])
		}
		wantCode(t, batch[5].Err, apiperf.EINVALID)
		created(t, batch[6])
		if stockOf(t, db, a.ID) != 0 || stockOf(t, db, c.ID) != 4 || stockOf(t, db, big.ID) != 1000 || countRows(t, db, "orders") != 3 {
			t.Fatalf("stock %d/%d/%d, %d orders", stockOf(t, db, a.ID), stockOf(t, db, c.ID), stockOf(t, db, big.ID), countRows(t, db, "orders"))
		}
		if got, err := db.Order(context.Background(), o.ID); err != nil || got.ProductID != c.ID {
			t.Fatalf("order %d: %+v, %v", o.ID, got, err)
		}
	})
}

// proxiedStore opens a store on a fresh MariaDB database through a chaos
// proxy that only does what the test tells it.
func proxiedStore(t *testing.T, timeout time.Duration) (*storage.DB, *testenv.ChaosProxy) {
	t.Helper()
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, cfg.Addr, testenv.Faults{MySQL: true})
	cfg.Addr = proxy.Addr()
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: cfg.FormatDSN(), QueryTimeout: timeout, MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, proxy
}

// TestOrderStore_PlaceOrders_UnknownCommit cuts the connection at COMMIT:
// after the server carried it out, the order is answered as created (it
// exists: reproduction 4 answered it 503 and a retry bought twice); before,
// it is answered unavailable and does not exist. Either way the answer is
// the truth, with or without a key.
func TestOrderStore_PlaceOrders_UnknownCommit(t *testing.T) {
	db, proxy := proxiedStore(t, 5*time.Second)
	p := mustProduct(t, db, 100, 100)
	for _, withKey := range []bool{false, true} {
		name := map[bool]string{false: "Unkeyed", true: "Keyed"}[withKey]
		newPlacement := func(key string) *apiperf.OrderPlacement {
			if withKey {
				return keyed(1, key, apiperf.OrderInput{ProductID: p.ID, Quantity: 1})
			}
			return &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: p.ID, Quantity: 1}}
		}
		t.Run(name+"/CutAfterCommit", func(t *testing.T) {
			orders, stock := countRows(t, db, "orders"), stockOf(t, db, p.ID)
			cuts := proxy.Stats().CommitsCutAfter
			proxy.CutNextCommit(true)
			pl := newPlacement("after")
			place(t, db, pl)
			o := created(t, pl)
			if got, err := db.Order(context.Background(), o.ID); err != nil || got.ProductID != p.ID {
				t.Fatalf("the answered order %d: %+v, %v", o.ID, got, err)
			}
			if countRows(t, db, "orders") != orders+1 || stockOf(t, db, p.ID) != stock-1 {
				t.Fatal("not exactly one order for one answer")
			}
			if proxy.Stats().CommitsCutAfter != cuts+1 {
				t.Fatalf("the proxy did not cut after a COMMIT: %v", proxy.Stats())
			}
		})
		t.Run(name+"/CutBeforeCommit", func(t *testing.T) {
			orders, stock := countRows(t, db, "orders"), stockOf(t, db, p.ID)
			proxy.CutNextCommit(false)
			pl := newPlacement("before")
			place(t, db, pl)
			wantCode(t, pl.Err, apiperf.EUNAVAILABLE)
			if countRows(t, db, "orders") != orders || stockOf(t, db, p.ID) != stock {
				t.Fatal("an order answered as failed exists")
			}
			if withKey {
				retry := newPlacement("before")
				place(t, db, retry)
				created(t, retry)
			}
		})
	}
}

// TestOrderStore_PlaceOrders_SlowCommit holds COMMIT back past the request's
// deadline. A commit that completes within the grace period is answered as
// created; one that completes later is answered unavailable, and a retry
// with the key then gets the order that committed, never a second one.
//
// With a 1.1 s query timeout the request waits for its COMMIT until 2.1 s,
// and the server ends a session idle in its transaction at 3 s (see
// TestOrderStore_PlaceOrders_VanishedClientDoesNotHoldTheKey): the first
// COMMIT arrives at 1.6 s, the second at 2.55 s, after its request gave up
// but while the server still waits for it.
func TestOrderStore_PlaceOrders_SlowCommit(t *testing.T) {
	db, proxy := proxiedStore(t, 1100*time.Millisecond)
	p := mustProduct(t, db, 100, 100)

	proxy.HoldNextCommit(1600 * time.Millisecond)
	pl := keyed(1, "slow", apiperf.OrderInput{ProductID: p.ID, Quantity: 1})
	place(t, db, pl)
	created(t, pl)

	proxy.HoldNextCommit(2550 * time.Millisecond)
	late := keyed(1, "late", apiperf.OrderInput{ProductID: p.ID, Quantity: 1})
	place(t, db, late)
	wantCode(t, late.Err, apiperf.EUNAVAILABLE)
	if !late.StockMayHaveChanged {
		t.Fatal("an unknown outcome must count as a possible stock change")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		retry := keyed(1, "late", apiperf.OrderInput{ProductID: p.ID, Quantity: 1})
		place(t, db, retry)
		if retry.Err == nil {
			if !retry.Replayed || countRows(t, db, "orders") != 2 || stockOf(t, db, p.ID) != 98 {
				t.Fatalf("retry %+v with %d orders", retry, countRows(t, db, "orders"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key is still undecided: %v", retry.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestOrderStore_PlaceOrders_RoundTrips counts the commands a placement
// sends MariaDB, each a network round trip, on one warm connection:
//
//	without a key   BEGIN, SELECT ... FOR UPDATE, UPDATE, INSERT, COMMIT      5
//	with a key      the same and the record's upsert                         6
//	replay          the same up to the upsert, the record's read, ROLLBACK    7
//	refusal         BEGIN, SELECT ... FOR UPDATE, ROLLBACK                    3
//
// The previous design took 5 without a key (with the read-back after
// COMMIT), 7 with one (the claim, the transaction, the read-back, the
// completion), 2 for a replay and 4 for a refusal. A replay costs more now:
// it runs the transaction and learns at the record that the key is taken
// (docs/idempotency.md weighs this).
func TestOrderStore_PlaceOrders_RoundTrips(t *testing.T) {
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, cfg.Addr, testenv.Faults{MySQL: true})
	cfg.Addr = proxy.Addr()
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: cfg.FormatDSN(), MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := mustProduct(t, db, 100, 1000)
	// Warm the connection: the first use of a statement on it prepares it.
	place(t, db, keyed(1, "warm", apiperf.OrderInput{ProductID: p.ID, Quantity: 1}), keyed(1, "warm2", apiperf.OrderInput{ProductID: p.ID, Quantity: 1}))
	place(t, db, keyed(1, "warm", apiperf.OrderInput{ProductID: p.ID, Quantity: 1}))
	for _, c := range []struct {
		name string
		pl   *apiperf.OrderPlacement
		want int64
	}{
		{"Unkeyed", &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: p.ID, Quantity: 1}}, 5},
		{"Keyed", keyed(1, "k", apiperf.OrderInput{ProductID: p.ID, Quantity: 1}), 6},
		{"Replay", keyed(1, "k", apiperf.OrderInput{ProductID: p.ID, Quantity: 1}), 7},
		{"Refusal", &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: p.ID, Quantity: 5000}}, 3},
	} {
		before := proxy.Stats().Commands
		place(t, db, c.pl)
		if got := proxy.Stats().Commands - before; got != c.want {
			t.Errorf("%s: %d round trips, want %d", c.name, got, c.want)
		}
	}
}

// TestOrderStore_PlaceOrders_KeyInProgress holds a key's record in an open
// transaction, as a request still being processed does: a placement with
// that key waits for it, and when its deadline passes first it is
// EINPROGRESS (a 409 with Retry-After), having stored and taken nothing.
// Once the holder rolls back, the key is free.
func TestOrderStore_PlaceOrders_KeyInProgress(t *testing.T) {
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: testenv.MySQLDSN(t), QueryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := mustProduct(t, db, 100, 10)
	in := apiperf.OrderInput{ProductID: p.ID, Quantity: 1}
	holder := keyed(1, "busy", in).Key
	tx, err := db.SQL().Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) "+
		"VALUES (?, ?, ?, 201, '{}', CURRENT_TIMESTAMP(6), CURRENT_TIMESTAMP(6) + INTERVAL 1 DAY)", holder.Scope[:], holder.Key, holder.RequestHash[:]); err != nil {
		t.Fatal(err)
	}
	waiting := keyed(1, "busy", in)
	place(t, db, waiting)
	wantCode(t, waiting.Err, apiperf.EINPROGRESS)
	if waiting.StockMayHaveChanged || stockOf(t, db, p.ID) != 10 || countRows(t, db, "orders") != 0 {
		t.Fatal("a placement that waited out its deadline left something behind")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	after := keyed(1, "busy", in)
	place(t, db, after)
	created(t, after)
}

// TestOrderStore_PlaceOrders_UnknownCommitWitnessIsOwnWrite loses the
// answer to a batch's COMMIT while it rolls back, and lets another request
// with the batch's key store the same refusal meanwhile. The outcome must
// be learned from a row only the batch could have written: a keyed
// refusal's record is no such row, since a retry with the same key and body
// stores the same bytes. Looking at it, the store took the other request's
// record for its own and answered the batch's unkeyed order as created
// although it had been rolled back: a 201 for an order that does not exist.
func TestOrderStore_PlaceOrders_UnknownCommitWitnessIsOwnWrite(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, cfg.Addr, testenv.Faults{MySQL: true})
	cfg.Addr = proxy.Addr()
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: cfg.FormatDSN(), QueryTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	direct, err := storage.Open(context.Background(), storage.Config{MySQLDSN: dsn, QueryTimeout: 20 * time.Second, SkipMigrations: true})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	p := mustProduct(t, db, 100, 10)
	missing := apiperf.OrderInput{ProductID: 1 << 40, Quantity: 1}

	// The batch's COMMIT is held in the proxy, the batch's rows locked.
	proxy.HoldNextCommit(10 * time.Second)
	refusal := keyed(1, "k", missing)
	order := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: p.ID, Quantity: 1}}
	batchDone := make(chan struct{})
	go func() {
		defer close(batchDone)
		place(t, db, refusal, order)
	}()
	waitFor(t, "the batch's COMMIT to be held", func() bool {
		for _, e := range proxy.Events() {
			if strings.Contains(e, "COMMIT held back") {
				return true
			}
		}
		return false
	})
	// A retry of the keyed refusal waits for the batch's record.
	retry := keyed(1, "k", missing)
	retryDone := make(chan struct{})
	go func() {
		defer close(retryDone)
		place(t, direct, retry)
	}()
	// Once the retry's upsert runs, it cannot finish while the batch holds
	// the record: seeing it in the process list is seeing it wait.
	waitFor(t, "the retry to wait for the batch's record", func() bool {
		var n int
		err := direct.SQL().QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST " +
			"WHERE info LIKE 'INSERT INTO idempotency_records%'").Scan(&n)
		return err == nil && n > 0
	})
	// The batch's connection dies with its COMMIT unsent: the server rolls
	// it back, and the retry stores its own (identical) refusal.
	proxy.CutAll()
	<-retryDone
	<-batchDone
	wantCode(t, retry.Err, apiperf.ENOTFOUND)
	if retry.Replayed {
		t.Fatal("the retry replayed a record that was rolled back")
	}
	if n := countRows(t, direct, "orders"); n != 0 {
		t.Fatalf("%d orders exist; the batch was rolled back", n)
	}
	if order.Order != nil {
		t.Fatalf("the batch's order %d was answered as created; it was rolled back", order.Order.ID)
	}
	wantCode(t, order.Err, apiperf.EUNAVAILABLE)
	if got := stockOf(t, direct, p.ID); got != 10 {
		t.Fatalf("stock %d, want 10", got)
	}
}

// waitFor polls cond until it holds, failing the test after ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOrderStore_PurgeABacklog gives the purge more expired records than
// one statement deletes within the query timeout, as a busy API gathers in
// the hour between purges (about 3 s per 360 000 records on MariaDB here,
// 4.6 s on SQLite, against the default 5 s). One DELETE for them all then
// fails every hour and rolls back, the backlog only grows, and on SQLite it
// holds the one write lock for those seconds, stalling every order. The
// purge must get through the backlog in pieces, each within the timeout.
//
// The timed part runs on MariaDB only: the pure-Go SQLite is some fifteen
// times slower under the race detector, which leaves no timeout that a
// whole backlog of CI size exceeds without the race detector and a single
// piece meets with it. On SQLite the test checks that the pieces add up.
func TestOrderStore_PurgeABacklog(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			cfg := configFor(t, backend)
			backlog := 2_500
			if backend == "mysql" {
				// A whole DELETE of this backlog takes about 0.4 s here; a
				// piece of 1 000 records, 20 ms.
				cfg.QueryTimeout, backlog = 150*time.Millisecond, 100_000
			}
			db, err := storage.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			fill(t, db, backlog)
			// Runs as the hourly loop makes them, until the backlog is gone.
			// Each piece fits the query timeout, so every run makes
			// progress even on a busy machine, where a piece now and then
			// runs out of time and ends its run early; one DELETE of the
			// whole backlog would never fit and no run would purge a row.
			// The rows left are the measure: a piece whose answer came
			// too late may still have been applied, so the counts the runs
			// return can fall short.
			var purged int64
			left := countRows(t, db, "idempotency_records")
			for i := 0; i < 30 && left > 1; i++ {
				n, err := db.PurgeIdempotencyRecords(context.Background())
				purged += n
				if err != nil {
					t.Logf("purge run %d: %v", i, err)
				}
				left = countRows(t, db, "idempotency_records")
			}
			if left != 1 || purged > int64(backlog) || purged == 0 {
				t.Fatalf("purged %d of %d expired records; %d records left, want only the unexpired one", purged, backlog, left)
			}
		})
	}
}

// fill writes n expired idempotency records and one that has not expired.
func fill(t *testing.T, db *storage.DB, n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := "INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) " +
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) " +
		"SELECT UNHEX(REPEAT('00', 32)), CONCAT('old-', i), UNHEX(REPEAT('00', 32)), 201, '{}', '2000-01-01', '2000-01-02' FROM n"
	later := "INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) " +
		"VALUES (UNHEX(REPEAT('00', 32)), 'live', UNHEX(REPEAT('00', 32)), 201, '{}', CURRENT_TIMESTAMP(6), CURRENT_TIMESTAMP(6) + INTERVAL 1 DAY)"
	if db.Dialect() == "sqlite" {
		q = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) " +
			"INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) " +
			"SELECT zeroblob(32), 'old-' || i, zeroblob(32), 201, '{}', '2000-01-01T00:00:00.000Z', '2000-01-02T00:00:00.000Z' FROM n"
		later = "INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) " +
			"VALUES (zeroblob(32), 'live', zeroblob(32), 201, '{}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 day'))"
	} else if _, err := conn.ExecContext(ctx, "SET SESSION max_recursive_iterations = ?", n+1); err != nil {
		// MariaDB bounds recursive queries with max_recursive_iterations,
		// MySQL with cte_max_recursion_depth.
		if _, err := conn.ExecContext(ctx, "SET SESSION cte_max_recursion_depth = ?", n+1); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{q, later} {
		var args []any
		if stmt == q {
			args = append(args, n)
		}
		if _, err := conn.ExecContext(ctx, stmt, args...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOrderStore_PlaceOrders_VanishedClientDoesNotHoldTheKey leaves a
// keyed order's transaction open with its COMMIT never arriving and its
// connection never closed, as when the service's host freezes or the
// network between it and the database drops packets without a reset. The
// request ends (503) within its deadline and grace. Left to itself the
// server would keep the session, and with it the record's and the
// product's locks, until TCP keepalive ended it (about two hours with
// Linux's defaults), and every retry of the key would be answered 409
// "still being processed" or 503, every other order for the product 503.
// The serving pool's session limit (idle_transaction_timeout on MariaDB,
// wait_timeout on MySQL: 2 s for this 500 ms query timeout) ends it, and
// the key is decided within seconds: the transaction was rolled back, so a
// retry places the order.
func TestOrderStore_PlaceOrders_VanishedClientDoesNotHoldTheKey(t *testing.T) {
	db, proxy := proxiedStore(t, 500*time.Millisecond)
	p := mustProduct(t, db, 100, 10)
	in := apiperf.OrderInput{ProductID: p.ID, Quantity: 1}
	proxy.HoldNextCommit(15 * time.Second) // the COMMIT and its connection are in limbo
	first := keyed(1, "limbo", in)
	place(t, db, first)
	wantCode(t, first.Err, apiperf.EUNAVAILABLE)
	start := time.Now()
	var last error
	for time.Since(start) < 5*time.Second {
		retry := keyed(1, "limbo", in)
		place(t, db, retry)
		if retry.Err == nil {
			created(t, retry)
			if n, stock := countRows(t, db, "orders"), stockOf(t, db, p.ID); n != 1 || stock != 9 {
				t.Fatalf("%d orders and %d in stock after the retry; want the retry's order alone", n, stock)
			}
			return
		}
		last = retry.Err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the key is still undecided 5 s after its request ended: %v", last)
}

// TestOrderStore_PlaceOrders_BatchRoundTrips pins what coalescing buys: a
// batch of 64 orders for one product costs the round trips of one order
// (BEGIN, the locking read, the UPDATE, one multi-row INSERT, COMMIT), and
// 100 orders over 10 products add only the UPDATE per product and an INSERT
// per statement size that fits (64 + 32 + 4).
func TestOrderStore_PlaceOrders_BatchRoundTrips(t *testing.T) {
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, cfg.Addr, testenv.Faults{MySQL: true})
	cfg.Addr = proxy.Addr()
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: cfg.FormatDSN(), MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var products []int64
	for range 10 {
		products = append(products, mustProduct(t, db, 100, 1000).ID)
	}
	batch := func(n, spread int) []*apiperf.OrderPlacement {
		var b []*apiperf.OrderPlacement
		for i := range n {
			b = append(b, &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: products[i%spread], Quantity: 1}})
		}
		return b
	}
	// Warm the connection: the first use of each statement form prepares it.
	place(t, db, batch(64, 1)...)
	place(t, db, batch(30, 1)...)
	place(t, db, batch(100, 10)...)
	for _, c := range []struct {
		name      string
		n, spread int
		want      int64
	}{
		{"OneProduct", 64, 1, 5},
		{"ThirtyOrders", 30, 1, 6}, // 24 + 6 rows
		{"TenProducts", 100, 10, 1 + 1 + 10 + 3 + 1},
	} {
		b := batch(c.n, c.spread)
		before := proxy.Stats().Commands
		place(t, db, b...)
		if got := proxy.Stats().Commands - before; got != c.want {
			t.Errorf("%s: %d round trips, want %d", c.name, got, c.want)
		}
		for _, p := range b {
			created(t, p)
		}
	}
}

// TestOrderStore_PlaceOrders_BatchIDs places batches whose orders share
// multi-row INSERTs: every order is told the id of its own row.
func TestOrderStore_PlaceOrders_BatchIDs(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		var products []int64
		for range 3 {
			products = append(products, mustProduct(t, db, 100, 10_000).ID)
		}
		seen := map[int64]bool{}
		for _, n := range []int{1, 2, 3, 5, 30, 47, 64, 65, 127, 200} {
			var b []*apiperf.OrderPlacement
			for i := range n {
				b = append(b, &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: products[i%3], Quantity: int64(1 + i%7)}})
			}
			place(t, db, b...)
			for _, p := range b {
				o := created(t, p)
				if seen[o.ID] {
					t.Fatalf("batch of %d: id %d handed out twice", n, o.ID)
				}
				seen[o.ID] = true
				got, err := db.Order(context.Background(), o.ID)
				if err != nil || got.ProductID != p.In.ProductID || got.Quantity != p.In.Quantity {
					t.Fatalf("batch of %d: order %d is %+v, %v; want product %d × %d", n, o.ID, got, err, p.In.ProductID, p.In.Quantity)
				}
			}
		}
	})
}
