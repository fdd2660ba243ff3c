package storage

import (
	"context"
	"database/sql"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
)

// TestTx_ContextEndsBeforeCommit ends a transaction's context after its
// last statement and before its COMMIT, as a request's deadline or the
// server's shutdown can. database/sql then rolls the transaction back on
// its own, and COMMIT reports sql.ErrTxDone, which was mapped to an
// internal error: a 500 for a product write, an order status change or an
// order that certainly did not commit, on the way down. It is the request
// running out of time, a 503 like a statement cut off by the same
// deadline.
func TestTx_ContextEndsBeforeCommit(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			d := openInternal(t, backend)
			// endBeforeCommit runs a statement, ends ctx, and waits until
			// database/sql has rolled the transaction back and released
			// its connection, so the COMMIT that follows meets a finished
			// transaction every time.
			endBeforeCommit := func(ctx context.Context, cancel context.CancelFunc, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, "INSERT INTO products (name, price, stock) VALUES ('x', 1, 1)"); err != nil {
					return err
				}
				cancel()
				deadline := time.Now().Add(5 * time.Second)
				for d.db.Stats().InUse > 0 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				return nil
			}

			t.Run("inTx", func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				err := d.inTx(ctx, func(tx *sql.Tx) error { return endBeforeCommit(ctx, cancel, tx) })
				if code := apiperf.ErrorCode(err); code != apiperf.EUNAVAILABLE {
					t.Fatalf("a transaction whose context ended before COMMIT: %s (%v), want %s", code, err, apiperf.EUNAVAILABLE)
				}
			})
			t.Run("PlaceOrders", func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				tx, err := d.db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := endBeforeCommit(ctx, cancel, tx); err != nil {
					t.Fatal(err)
				}
				committed, unknown, err := commit(context.Background(), tx)
				if committed || unknown {
					t.Fatalf("commit after the rollback: committed %v, unknown %v (%v)", committed, unknown, err)
				}
				// What placeOnce answers for a certain failure.
				if code := apiperf.ErrorCode(wrapPlace(mapError(err))); code != apiperf.EUNAVAILABLE {
					t.Fatalf("an order rolled back by its context: %s (%v), want %s", code, err, apiperf.EUNAVAILABLE)
				}
			})
			var n int
			if err := d.db.QueryRow("SELECT COUNT(*) FROM products").Scan(&n); err != nil || n != 0 {
				t.Fatalf("%d products (%v): the transactions were to roll back", n, err)
			}
		})
	}
}

// openInternal opens a store on a fresh database of backend, closed when
// the test ends.
func openInternal(t *testing.T, backend string) *DB {
	t.Helper()
	cfg := Config{DataDir: t.TempDir()}
	if backend == "mysql" {
		cfg = Config{MySQLDSN: testenv.MySQLDSN(t)}
	}
	d, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
