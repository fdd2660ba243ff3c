package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	apiperf "github.com/api-perf/api-perf"
)

// beforeMigration holds work a migration's SQL cannot do, run on the
// migration's pool just before the migration of that version is applied
// (see bookkeeper.SetVersion), under the migration lock.
var beforeMigration = map[int]func(ctx context.Context, d *dialect, db *sql.DB) error{
	3: carryOverKeyedOrders,
}

// carryOverKeyedOrders keeps the key of every keyed order of the last 24
// hours that has no idempotency record by the time migration 0003 drops
// orders.idempotency_key. The previous design left such orders when an
// order committed and its response was never stored (its read-back failed
// and the claim was abandoned, or the process died before completing the
// claim), and it still answered a retry with that key with the existing
// order, through the column's unique index. Without the column and without
// a record, the retry would place a second order. Each such order gets the
// record the previous design would have answered with: a 201 with the
// order as it stands, in the shared scope, expiring 24 hours after the
// order was placed. Completed responses were carried over by migration
// 0002 and are left as they are.
func carryOverKeyedOrders(ctx context.Context, d *dialect, c *sql.DB) error {
	q := `SELECT o.id, o.product_id, o.quantity, o.unit_price, o.total, o.status, o.created_at, o.updated_at, o.idempotency_key
		FROM orders o WHERE o.idempotency_key IS NOT NULL AND o.created_at > {ago:86400}
		AND NOT EXISTS (SELECT 1 FROM idempotency_records r WHERE r.scope = ? AND r.idem_key = o.idempotency_key)`
	insert := "INSERT OR IGNORE INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) VALUES (?, ?, ?, 201, ?, ?, ?)"
	if d.name == "mysql" {
		q = `SELECT o.id, o.product_id, o.quantity, o.unit_price, o.total, o.status, o.created_at, o.updated_at, o.idempotency_key
			FROM orders o WHERE o.idempotency_key IS NOT NULL AND o.created_at > {ago:86400}
			AND NOT EXISTS (SELECT 1 FROM idempotency_records r WHERE r.scope = ? AND r.idem_key = CAST(o.idempotency_key AS BINARY))`
		insert = "INSERT IGNORE INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) VALUES (?, ?, ?, 201, ?, ?, ?)"
	}
	rows, err := c.QueryContext(ctx, d.expand(q), apiperf.SharedScope[:])
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) && me.Number == 1054 || strings.Contains(err.Error(), "no such column") {
			// The column is gone already: the schema was repaired by hand
			// and forced back to version 2. There is nothing to carry.
			return nil
		}
		return err
	}
	type keyed struct {
		key   string
		order apiperf.Order
	}
	var found []keyed
	for rows.Next() {
		var k keyed
		o := &k.order
		if err := rows.Scan(&o.ID, &o.ProductID, &o.Quantity, &o.UnitPrice, &o.Total, (*string)(&o.Status),
			dbTime{&o.CreatedAt}, dbTime{&o.UpdatedAt}, &k.key); err != nil {
			rows.Close()
			return err
		}
		// A key longer than a record holds could not be sent today.
		if len(k.key) <= apiperf.MaxIdempotencyKeyLen {
			found = append(found, k)
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, k := range found {
		o := &k.order
		body, err := json.Marshal(o)
		if err != nil {
			return err
		}
		hash := apiperf.OrderInput{ProductID: o.ProductID, Quantity: o.Quantity}.Digest()
		var created, expires any = o.CreatedAt, o.CreatedAt.Add(apiperf.IdempotencyTTL)
		if d.name == "sqlite" {
			created, expires = sqliteTime(o.CreatedAt), sqliteTime(o.CreatedAt.Add(apiperf.IdempotencyTTL))
		}
		if _, err := c.ExecContext(ctx, insert, apiperf.SharedScope[:], k.key, hash[:], body, created, expires); err != nil {
			return err
		}
	}
	return nil
}

// sqliteTime formats t as the SQLite schema stores times (strftime's
// '%Y-%m-%dT%H:%M:%fZ'), which compare correctly as text.
func sqliteTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
