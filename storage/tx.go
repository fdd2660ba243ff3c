package storage

import (
	"context"
	"database/sql"
)

// The frame of every store call: its deadline, the writer slots that
// serialize writes, and the transaction around a write.

// withTimeout bounds one store call by the configured query timeout.
func (d *DB) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.timeout)
}

// lockWrites waits, in arrival order, for a writer slot.
func (d *DB) lockWrites(ctx context.Context) (unlock func(), err error) {
	select {
	case d.writers <- struct{}{}:
		return func() { <-d.writers }, nil
	case <-ctx.Done():
		return nil, mapError(ctx.Err())
	}
}

// exec runs one writing statement outside a transaction.
func (d *DB) exec(ctx context.Context, st *sql.Stmt, args ...any) (sql.Result, error) {
	unlock, err := d.lockWrites(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res, err := st.ExecContext(ctx, args...)
	return res, mapError(err)
}

// inTx runs fn in a transaction and commits it, rolling back on error.
func (d *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	unlock, err := d.lockWrites(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return mapError(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback() //nolint:errcheck // the first error is the one to report
		return mapError(err)
	}
	return mapError(tx.Commit())
}
