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
func (d *DB) PurgeIdempotencyRecords(ctx context.Context) (int64, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	res, err := d.stmts.purgeRecords.ExecContext(ctx)
	if err != nil {
		return 0, mapError(err)
	}
	return res.RowsAffected()
}
