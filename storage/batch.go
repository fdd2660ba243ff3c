package storage

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	apiperf "github.com/api-perf/api-perf"
)

// rowCounts are the sizes of the multi-row statements of a batch, each
// about 1.5 times the one before: a batch's orders are inserted in as few
// statements of these sizes as fit (30 orders take 24 + 6), and its
// products are locked by one read padded to the next size. A fixed set
// keeps the statements each connection prepares few (the server's limit
// on prepared statements is shared by every process).
var rowCounts = [...]int{2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64}

// maxRows is the most rows one multi-row statement of a batch carries.
const maxRows = 64

// sizedStatements are the multi-row statements of order batches, one per
// size of rowCounts (index i holds rowCounts[i] rows). They are
// prepared at Open: preparing one inside a transaction would wait for a
// second connection of a pool that may have only the one.
type sizedStatements struct {
	insertOrders [len(rowCounts)]*sql.Stmt
	lockProducts [len(rowCounts)]*sql.Stmt
}

// prepare prepares every form on db.
func (s *sizedStatements) prepare(ctx context.Context, db *sql.DB, dl *dialect) error {
	for i := range s.insertOrders {
		n := rowCounts[i]
		for _, f := range []struct {
			st **sql.Stmt
			q  string
		}{
			{&s.insertOrders[i], "INSERT INTO orders (product_id, quantity, unit_price, total, status, created_at, updated_at) VALUES " +
				placeholders(n, "(?, ?, ?, ?, 'pending', ?, ?)")},
			{&s.lockProducts[i], dl.expand("SELECT id, price, stock, {now} FROM products WHERE id IN (" + placeholders(n, "?") + ") ORDER BY id{forupdate}")},
		} {
			err := retryUnavailable(ctx, func() (err error) {
				*f.st, err = db.PrepareContext(ctx, f.q)
				return mapError(err)
			})
			if err != nil {
				return fmt.Errorf("prepare a statement of %d rows: %w", n, err)
			}
		}
	}
	return nil
}

func (s *sizedStatements) close() {
	for _, st := range append(s.insertOrders[:], s.lockProducts[:]...) {
		if st != nil {
			st.Close()
		}
	}
}

// of is the statement of n rows (one of rowCounts) in forms.
func of(forms *[len(rowCounts)]*sql.Stmt, n int) *sql.Stmt {
	return forms[slices.Index(rowCounts[:], n)]
}

// chunk is the row count of the next multi-row INSERT for rest rows: the
// largest size of rowCounts not above rest, or 1.
func chunk(rest int) int {
	n := 1
	for _, c := range rowCounts {
		if c <= rest {
			n = c
		}
	}
	return n
}

// padded is the size of the locking read for n products: the smallest
// size of rowCounts not below n, or 1.
func padded(n int) int {
	if n <= 1 {
		return 1
	}
	for _, c := range rowCounts {
		if c >= n {
			return c
		}
	}
	return maxRows
}

// placeholders is row repeated rows times, separated by commas: the
// VALUES list of a multi-row INSERT, or the list of an IN.
func placeholders(rows int, row string) string {
	var b strings.Builder
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// insertOrders inserts the batch's created orders in multi-row INSERTs and
// gives each its id. A multi-row INSERT reports one id: MySQL the first
// row's, SQLite the last row's; the others follow one by one, which holds
// while the database hands out consecutive ids to one statement (see
// consecutiveIDs). Without that guarantee each order has its own INSERT.
func (d *DB) insertOrders(ctx context.Context, tx *sql.Tx, orders []*apiperf.Order, now any) error {
	for rest := orders; len(rest) > 0; {
		n := 1
		if d.consecutiveIDs {
			n = chunk(len(rest))
		}
		part := rest[:n]
		rest = rest[n:]
		st := d.stmts.insertOrder
		if n > 1 {
			st = of(&d.sized.insertOrders, n)
		}
		args := make([]any, 0, 6*n)
		for _, o := range part {
			args = append(args, o.ProductID, o.Quantity, d.dialect.money(o.UnitPrice), d.dialect.money(o.Total), now, now)
		}
		res, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		if d.dialect == sqliteDialect {
			id -= int64(n - 1)
		}
		for i, o := range part {
			o.ID = id + int64(i)
		}
	}
	return nil
}

// lockRows runs the locking read of the products ids (sorted, distinct) in
// tx and calls row for each row found. A batch's ids are read 64 at a time,
// each read padded to a size of rowCounts by repeating its last id, so that the
// few statement forms are prepared once.
func (d *DB) lockRows(ctx context.Context, tx *sql.Tx, ids []int64, row func(rows *sql.Rows) error) error {
	for rest := ids; len(rest) > 0; {
		part := rest[:min(len(rest), maxRows)]
		rest = rest[len(part):]
		st := d.stmts.lockProduct
		n := 1
		if len(part) > 1 {
			n = padded(len(part))
			st = of(&d.sized.lockProducts, n)
		}
		args := make([]any, n)
		for i := range args {
			args[i] = part[min(i, len(part)-1)]
		}
		if err := func() error {
			rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				if err := row(rows); err != nil {
					return err
				}
			}
			return rows.Err()
		}(); err != nil {
			return err
		}
	}
	return nil
}

// consecutiveIDs asks MySQL whether one INSERT's rows get consecutive ids:
// InnoDB guarantees it for an INSERT of known row count unless
// innodb_autoinc_lock_mode is 2 ("interleaved", MySQL 8's default), and
// only while auto_increment_increment is 1. SQLite, with its single writer
// and AUTOINCREMENT, always does.
func consecutiveIDs(ctx context.Context, db *sql.DB, dl *dialect) (bool, error) {
	if dl == sqliteDialect {
		return true, nil
	}
	var mode, step int64
	if err := db.QueryRowContext(ctx, "SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment").Scan(&mode, &step); err != nil {
		return false, fmt.Errorf("reading the auto-increment settings: %w", err)
	}
	return mode < 2 && step == 1, nil
}
