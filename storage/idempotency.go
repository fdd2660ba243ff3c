package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"

	apiperf "github.com/api-perf/api-perf"
)

// BeginIdempotent claims an idempotency key. The claim is a plain INSERT on
// the key's primary key, so of many concurrent first requests exactly one
// wins; the others read the row and are told to wait (in progress), to
// replay the stored response, or that the key was used with another body.
// A claim left running for over a minute (its process died) may be taken
// over; keys older than 24 hours are forgotten.
func (d *DB) BeginIdempotent(ctx context.Context, key string, hash []byte) (_ *apiperf.StoredResponse, err error) {
	defer apiperf.Wrap(&err, "BeginIdempotent")
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	for attempt := 0; attempt < 2; attempt++ {
		_, err := d.exec(ctx, d.stmts.insertIdemKey, key, hash)
		if err == nil {
			return nil, nil
		}
		if err = mapError(err); apiperf.ErrorCode(err) != apiperf.ECONFLICT {
			return nil, err
		}
		var (
			stored       []byte
			status       sql.NullInt64
			body         []byte
			stale, under int
		)
		err = d.stmts.idemKey.QueryRowContext(ctx, key).Scan(&stored, &status, &body, &stale, &under)
		if errors.Is(err, sql.ErrNoRows) {
			continue // abandoned between our INSERT and SELECT: claim again
		} else if err != nil {
			return nil, mapError(err)
		}
		if under == 1 {
			if _, err := d.exec(ctx, d.stmts.expireIdemKey, key); err != nil {
				return nil, mapError(err)
			}
			continue
		}
		if !bytes.Equal(stored, hash) {
			return nil, apiperf.Errorf(apiperf.EMISMATCH, "Idempotency-Key was already used with a different request body")
		}
		if status.Valid {
			return &apiperf.StoredResponse{Status: int(status.Int64), Body: body}, nil
		}
		if stale == 1 {
			res, err := d.exec(ctx, d.stmts.takeOverIdemKey, key)
			if err != nil {
				return nil, mapError(err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				return nil, nil
			}
		}
		return nil, apiperf.Errorf(apiperf.EINPROGRESS, "a request with this Idempotency-Key is still being processed")
	}
	return nil, apiperf.Errorf(apiperf.EINPROGRESS, "a request with this Idempotency-Key is still being processed")
}

// CompleteIdempotent stores the response for the key's owner.
func (d *DB) CompleteIdempotent(ctx context.Context, key string, resp apiperf.StoredResponse) error {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	_, err := d.exec(ctx, d.stmts.completeIdemKey, resp.Status, resp.Body, key)
	return mapError(err)
}

// AbandonIdempotent releases an unfinished claim so a retry can run.
func (d *DB) AbandonIdempotent(ctx context.Context, key string) error {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	_, err := d.exec(ctx, d.stmts.abandonIdemKey, key)
	return mapError(err)
}

// PurgeIdempotencyKeys deletes keys older than 24 hours.
func (d *DB) PurgeIdempotencyKeys(ctx context.Context) (int64, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	res, err := d.stmts.purgeIdemKeys.ExecContext(ctx)
	if err != nil {
		return 0, mapError(err)
	}
	return res.RowsAffected()
}
