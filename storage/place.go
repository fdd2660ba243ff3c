package storage

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-sql-driver/mysql"

	apiperf "github.com/api-perf/api-perf"
)

// PlaceOrders places a batch of orders in one transaction:
//
//	BEGIN
//	SELECT id, price, stock, now FROM products WHERE id IN (...) FOR UPDATE
//	-- each order decided here: unknown product, total too large, short stock
//	UPDATE products SET stock = stock - ? ...      (per product)
//	INSERT INTO orders ... VALUES (...), (...)      (64 created orders at a time)
//	INSERT INTO idempotency_records ... (upsert)    (per keyed order)
//	COMMIT
//
// The product rows are locked first, in id order, so concurrent batches
// queue on them instead of deadlocking, and each order is decided on the
// stock as it is. The response is built from what the transaction knows
// (the product's price, the database's clock, the new id), so nothing is
// read back after COMMIT and no step after it can fail a committed order.
//
// A keyed order's response is written in the same transaction as the order,
// so a key is never claimed without its outcome. Concurrent requests with
// one key meet on that record's unique index: the second waits for the
// first's transaction and then finds its response, and its own work is
// rolled back. When COMMIT gets no answer, the outcome is looked up on
// another connection before answering (see resolve).
func (d *DB) PlaceOrders(ctx context.Context, batch []*apiperf.OrderPlacement) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	for _, p := range batch {
		p.Order, p.Err, p.Stored, p.Replayed, p.StockMayHaveChanged, p.Invalidated = nil, nil, nil, false, false, false
	}
	todo := batch
	// Every round settles at least one placement unless it is retried after
	// a deadlock; the bound only guards against a loop that would not end.
	for round := 0; len(todo) > 0; round++ {
		if round > len(batch)+maxDeadlockRetries {
			failAll(todo, &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the database is busy, retry"})
			return
		}
		todo = d.placeOnce(ctx, todo)
	}
}

// maxDeadlockRetries bounds how often a batch is run again after the
// database chose it as a deadlock victim.
const maxDeadlockRetries = 3

// resolveGrace is how long the outcome of a COMMIT may still be waited for
// and looked up after the request's context has ended (its deadline passed,
// or the server is shutting down), so that an order that committed is
// answered as created rather than as unknown.
const resolveGrace = time.Second

// lockedProduct is a product row as the transaction locked it.
type lockedProduct struct {
	price apiperf.Money
	stock int64
	taken int64
}

// tentative is what one placement will have become if the transaction
// commits. Placements are only told once the outcome is certain.
type tentative struct {
	p      *apiperf.OrderPlacement
	order  *apiperf.Order
	err    error
	stored *apiperf.StoredResponse
}

// step names where a transaction was when a statement failed, to tell
// waiting for another request with the same key from any other failure.
type step int

const (
	stepLock step = iota
	stepStock
	stepInsert
	stepRecord
)

// placeOnce runs one transaction for todo and settles the placements it
// can. It returns those to run again: duplicates of a key already in this
// transaction, the rest of a batch in which some keys turned out to be
// answered already, or a whole batch chosen as a deadlock victim.
func (d *DB) placeOnce(ctx context.Context, todo []*apiperf.OrderPlacement) (again []*apiperf.OrderPlacement) {
	unlock, err := d.lockWrites(ctx)
	if err != nil {
		failAll(todo, err)
		return nil
	}
	defer unlock()

	// A key may appear once per transaction: a second placement with it
	// must see the first one's committed response, not its own write.
	var work []*tentative
	seen := map[keyID]bool{}
	for _, p := range todo {
		if p.Key != nil {
			id := keyID{p.Key.Scope, p.Key.Key}
			if seen[id] {
				again = append(again, p)
				continue
			}
			seen[id] = true
		}
		work = append(work, &tentative{p: p})
	}

	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		failAll(todo, wrapPlace(mapError(err)))
		return nil
	}
	at, writes, replays, err := d.placeInTx(ctx, tx, work)
	if err != nil {
		tx.Rollback() //nolint:errcheck // the statement's error is the one to report
		if isDeadlock(err) && ctx.Err() == nil {
			return todo
		}
		failAll(todo, placeError(err, at))
		return nil
	}
	if len(replays) > 0 {
		// Some keys are answered already. This transaction did work for
		// them that must not stand, so it is undone and the other
		// placements run again without them, in their arrival order: a
		// key's first placement must stay ahead of its duplicates, and
		// each order ahead of those that arrived after it.
		tx.Rollback() //nolint:errcheck // nothing was committed either way
		answered := make(map[*apiperf.OrderPlacement]bool, len(replays))
		for t, ok := range replays {
			answered[t.p] = ok
		}
		again = again[:0]
		for _, p := range todo {
			if !answered[p] {
				again = append(again, p)
			}
		}
		return again
	}
	if !writes {
		// Only refusals of placements without a key: nothing to keep.
		tx.Rollback() //nolint:errcheck // nothing to commit
		settle(work)
		return again
	}
	// Once COMMIT is sent, the request's context may end (its deadline, a
	// shutdown) without cutting the answer off: the commit's outcome is
	// waited for, and looked up if need be, for resolveGrace longer.
	gctx, cancel := graceContext(ctx, resolveGrace)
	defer cancel()
	committed, unknown, err := commit(gctx, tx)
	switch {
	case committed:
		settle(work)
	case unknown:
		d.resolve(gctx, work, err)
	default:
		failAll(todo, wrapPlace(mapError(err)))
		return nil
	}
	return again
}

// keyID is an idempotency key within its scope.
type keyID struct {
	scope apiperf.Scope
	key   string
}

// placeInTx runs the batch's statements. It reports the step a failing
// statement was at, whether anything is to be committed, and the keyed
// placements that found their key taken: true for those settled here with
// the stored response, false for those whose record expired meanwhile and
// must run again.
func (d *DB) placeInTx(ctx context.Context, tx *sql.Tx, work []*tentative) (at step, writes bool, replays map[*tentative]bool, err error) {
	at = stepLock
	products, now, err := d.lockProducts(ctx, tx, work)
	if err != nil {
		return at, false, nil, err
	}
	var createdAt time.Time
	if now != nil {
		if err := (dbTime{&createdAt}).Scan(now); err != nil {
			return at, false, nil, err
		}
	}
	for _, t := range work {
		in := t.p.In
		lp := products[in.ProductID]
		switch {
		case lp == nil:
			t.err = errProductNotFound(in.ProductID)
		case in.Quantity < 1 || in.Quantity > apiperf.MaxQuantity:
			t.err = &apiperf.Error{Code: apiperf.EINVALID, Message: "the request has invalid fields",
				Fields: []apiperf.FieldError{{Field: "quantity", Message: fmt.Sprintf("must be between 1 and %d", apiperf.MaxQuantity)}}}
		case lp.price > 0 && in.Quantity > int64(apiperf.MaxTotal/lp.price):
			t.err = &apiperf.Error{Code: apiperf.EINVALID, Message: "the order's total is too large",
				Fields: []apiperf.FieldError{{Field: "quantity", Message: fmt.Sprintf(
					"at the product's price of %s, the total must not exceed %s; order at most %d units",
					lp.price, apiperf.MaxTotal, int64(apiperf.MaxTotal/lp.price))}}}
		case lp.stock-lp.taken < in.Quantity:
			t.err = apiperf.Errorf(apiperf.ECONFLICT, "product %d has fewer than %d units in stock", in.ProductID, in.Quantity)
		default:
			lp.taken += in.Quantity
			t.order = &apiperf.Order{ProductID: in.ProductID, Quantity: in.Quantity, UnitPrice: lp.price,
				Total: lp.price * apiperf.Money(in.Quantity), Status: apiperf.StatusPending,
				CreatedAt: createdAt, UpdatedAt: createdAt}
		}
	}

	at = stepStock
	ids := make([]int64, 0, len(products))
	for id, lp := range products {
		if lp.taken > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		taken := products[id].taken
		res, err := tx.StmtContext(ctx, d.stmts.takeStock).ExecContext(ctx, taken, now, id, taken)
		if err != nil {
			return at, false, nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return at, false, nil, err
		} else if n != 1 {
			return at, false, nil, fmt.Errorf("stock of locked product %d changed under its lock", id)
		}
		writes = true
	}

	at = stepInsert
	orders := make([]*apiperf.Order, 0, len(work))
	for _, t := range work {
		if t.order != nil {
			orders = append(orders, t.order)
		}
	}
	if err := d.insertOrders(ctx, tx, orders, now); err != nil {
		return at, false, nil, err
	}

	// Records go in key order, so two batches sharing keys take their
	// locks in the same order and cannot deadlock on them.
	at = stepRecord
	keyed := make([]*tentative, 0, len(work))
	for _, t := range work {
		if t.p.Key != nil {
			keyed = append(keyed, t)
		}
	}
	slices.SortFunc(keyed, func(a, b *tentative) int {
		if c := bytes.Compare(a.p.Key.Scope[:], b.p.Key.Scope[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.p.Key.Key, b.p.Key.Key)
	})
	for _, t := range keyed {
		k := t.p.Key
		if t.p.Respond == nil {
			return at, false, nil, errors.New("a placement with a Key needs Respond")
		}
		r := t.p.Respond(t.order, t.err)
		t.stored = &r
		res, err := tx.StmtContext(ctx, d.stmts.putRecord).ExecContext(ctx, k.Scope[:], k.Key, k.RequestHash[:], r.Status, r.Body)
		if err != nil {
			return at, false, nil, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return at, false, nil, err
		}
		if n > 0 {
			writes = true
			continue
		}
		// An unexpired record holds the key; this statement waited for
		// its transaction if it was still running, so it is committed.
		if replays == nil {
			replays = map[*tentative]bool{}
		}
		rec, err := d.readRecord(ctx, tx.StmtContext(ctx, d.stmts.record), k)
		if err != nil {
			return at, false, nil, err
		}
		// Without a record it expired after the upsert looked: the
		// placement runs again and takes the key.
		if replays[t] = rec != nil; rec != nil {
			settleRecord(t.p, rec)
		}
	}
	return at, writes, replays, nil
}

// lockProducts locks the rows of every product the batch orders, in id
// order, and reads the database's clock. It returns a nil clock when none
// of the products exists.
func (d *DB) lockProducts(ctx context.Context, tx *sql.Tx, work []*tentative) (map[int64]*lockedProduct, any, error) {
	ids := make([]int64, 0, len(work))
	for _, t := range work {
		ids = append(ids, t.p.In.ProductID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	products := make(map[int64]*lockedProduct, len(ids))
	var now any
	err := d.lockRows(ctx, tx, ids, func(rows *sql.Rows) error {
		var id int64
		lp := new(lockedProduct)
		if err := rows.Scan(&id, &lp.price, &lp.stock, &now); err != nil {
			return err
		}
		products[id] = lp
		return nil
	})
	return products, now, err
}

// commit commits tx and reports whether it certainly committed, whether
// its outcome is unknown (the COMMIT may have been carried out without its
// answer arriving), and otherwise why it certainly did not. A COMMIT that
// does not answer before ctx ends counts as unknown; the driver does not
// give up on it by itself.
func commit(ctx context.Context, tx *sql.Tx) (committed, unknown bool, err error) {
	done := make(chan error, 1)
	go func() { done <- tx.Commit() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return false, true, ctx.Err()
	}
	if err == nil {
		return true, false, nil
	}
	// database/sql checks the context and the transaction's state before
	// it sends COMMIT, and the driver says ErrBadConn only when it wrote
	// nothing; an error packet is the server refusing. Anything else came
	// after COMMIT may have reached the server.
	var me *mysql.MySQLError
	if errors.Is(err, sql.ErrTxDone) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, driver.ErrBadConn) || errors.As(err, &me) {
		return false, false, err
	}
	return false, true, err
}

// resolve learns the outcome of a transaction whose COMMIT got no answer,
// on another connection, by a locking read of a row the transaction wrote
// (see witnessOf). While that transaction still holds the row (its COMMIT
// still running, or its session not yet ended by the server) the read
// waits; afterwards it sees the row only if the transaction committed.
// When the read cannot be made in time the placements fail with
// EUNAVAILABLE: for a keyed one a retry meets the record, or its absence,
// and so learns the truth.
func (d *DB) resolve(rctx context.Context, work []*tentative, commitErr error) {
	witness := witnessOf(work)
	var committed bool
	var rec *storedRecord
	err := retryLookup(rctx, func() error {
		var err error
		if witness.p.Key != nil {
			rec, err = d.readRecord(rctx, d.stmts.record, witness.p.Key)
			committed = rec != nil && rec.status == witness.stored.Status && bytes.Equal(rec.body, witness.stored.Body)
			return err
		}
		o := new(apiperf.Order)
		err = scanOrder(d.stmts.orderForShare.QueryRowContext(rctx, witness.order.ID), o)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		w := witness.order
		committed = err == nil && o.ProductID == w.ProductID && o.Quantity == w.Quantity && o.CreatedAt.Equal(w.CreatedAt)
		return err
	})
	switch {
	case err != nil:
		e := &apiperf.Error{Code: apiperf.EUNAVAILABLE, Err: fmt.Errorf("PlaceOrders: COMMIT: %w; lookup: %w", commitErr, err),
			Message: "the database did not confirm the order; retry with the same Idempotency-Key to learn its outcome"}
		for _, t := range work {
			t.p.Err = e
			t.p.StockMayHaveChanged = t.order != nil
		}
	case committed:
		settle(work)
	default:
		// Certainly not committed. The witness's key may hold another
		// request's response, which is then this placement's answer too.
		e := &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the database lost the order before it was stored; retry",
			Err: fmt.Errorf("PlaceOrders: COMMIT: %w", commitErr)}
		for _, t := range work {
			t.p.Err = e
		}
		if rec != nil {
			witness.p.Err = nil
			settleRecord(witness.p, rec)
		}
	}
}

// witnessOf picks the row whose presence tells whether work committed. It
// must be a row no other transaction could have written with the same
// content. A created order qualifies, read by its id or, when it is keyed,
// through its record, whose body holds that id; a keyed order comes first
// because its record is what a retry meets. A refusal's record does not
// qualify when an order is in the batch: a retry with the same key and
// body stores the same bytes, and after this transaction rolled back it
// would pass for this one's write. A batch of keyed refusals alone can
// only be judged by one of their records: if a retry's identical refusal is
// taken for it, the witness's answer is still its key's truth, but the
// batch's other keys are told refusals that may not be stored (no caller
// sends such a batch today; the server places one order per call).
func witnessOf(work []*tentative) *tentative {
	var witness *tentative
	rank := func(t *tentative) int {
		switch {
		case t.order != nil && t.p.Key != nil:
			return 3
		case t.order != nil:
			return 2
		case t.p.Key != nil:
			return 1
		}
		return 0
	}
	for _, t := range work {
		if witness == nil || rank(t) > rank(witness) {
			witness = t
		}
	}
	return witness
}

// retryLookup runs fn until it succeeds or ctx ends, pausing briefly after
// each failure: a lookup after a lost connection may itself meet another
// connection the same fault has broken.
func retryLookup(ctx context.Context, fn func() error) error {
	pause := 10 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if apiperf.ErrorCode(mapError(err)) != apiperf.EUNAVAILABLE {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// graceContext is a context that ends grace after ctx does: the time to
// finish one thing that must not be cut off with the request.
func graceContext(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return gctx, func() { stop(); cancel() }
}

// settle tells every placement of a committed (or commit-free) transaction
// its outcome.
func settle(work []*tentative) {
	for _, t := range work {
		t.p.Order, t.p.Err, t.p.Stored = t.order, t.err, t.stored
		t.p.StockMayHaveChanged = t.order != nil
	}
}

// settleRecord answers p with the record an earlier request stored for its key.
func settleRecord(p *apiperf.OrderPlacement, rec *storedRecord) {
	if rec.hash != p.Key.RequestHash {
		p.Err = apiperf.Errorf(apiperf.EMISMATCH, "Idempotency-Key was already used with a different request body")
		return
	}
	p.Stored = &apiperf.StoredResponse{Status: rec.status, Body: rec.body}
	p.Replayed = true
}

func failAll(todo []*apiperf.OrderPlacement, err error) {
	for _, p := range todo {
		p.Err = err
	}
}

// placeError is the error of a transaction that failed at step at. A key's
// record waits for an unfinished transaction that holds the same key, so a
// timeout there means that request is still running.
func placeError(err error, at step) error {
	err = mapError(err)
	if at == stepRecord && isTimeout(err) {
		return &apiperf.Error{Code: apiperf.EINPROGRESS, Err: err,
			Message: "a request with this Idempotency-Key is still being processed; retry later"}
	}
	return wrapPlace(err)
}

func wrapPlace(err error) error { return fmt.Errorf("PlaceOrders: %w", err) }

// isTimeout reports a deadline or a lock wait that ran out.
func isTimeout(err error) bool {
	var me *mysql.MySQLError
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &me) && me.Number == 1205)
}

// isDeadlock reports that the database rolled the transaction back to
// break a deadlock; running it again is safe.
func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1213
}
