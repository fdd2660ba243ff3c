package storage

import (
	"context"
	"database/sql"
	"errors"

	apiperf "github.com/api-perf/api-perf"
)

// storedRecord is an unexpired idempotency record.
type storedRecord struct {
	hash   [32]byte
	status int
	body   []byte
}

// readRecord reads k's unexpired record with st (the record statement, on
// its own or within a transaction). It returns nil when there is none: an
// expired record counts as absent everywhere, not only once it is purged.
// The read is a locking one on MySQL, so it waits for a transaction that
// is still writing the record and then sees what that transaction left.
func (d *DB) readRecord(ctx context.Context, st *sql.Stmt, k *apiperf.IdempotencyKey) (*storedRecord, error) {
	var rec storedRecord
	var hash []byte
	err := st.QueryRowContext(ctx, k.Scope[:], k.Key).Scan(&hash, &rec.status, &rec.body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(hash) != len(rec.hash) {
		return nil, errors.New("idempotency record with a malformed request hash")
	}
	copy(rec.hash[:], hash)
	return &rec, nil
}

// PurgeIdempotencyRecords deletes expired idempotency records. It is
// housekeeping only: every read already treats an expired record as absent.
// The records go purgeBatch at a time, each batch a statement of its own
// under the query timeout and queued with the other writers, so that an
// hour's backlog on a busy API neither outlasts the timeout (and rolls back
// every time) nor holds SQLite's one write lock while orders wait. It
// returns how many it deleted, and stops at the first batch that finds
// fewer than purgeBatch, at an error, or when ctx ends.
func (d *DB) PurgeIdempotencyRecords(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := d.purgeBatch(ctx)
		total += n
		if err != nil || n < purgeBatch {
			return total, err
		}
	}
}

// purgeBatch is the LIMIT of the purge statement.
const purgeBatch = 1000

func (d *DB) purgeBatch(ctx context.Context) (int64, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	res, err := d.exec(ctx, d.stmts.purgeRecords)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return n, mapError(err)
}
