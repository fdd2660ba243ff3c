package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
)

// TestMigrate_UpgradesInPlace builds a database at the first schema with
// the data the old idempotency design left behind, upgrades it, and checks
// that orders keep their ids (and that deleted ids stay retired), completed
// responses carry over into the shared scope, unfinished claims go, and a
// key that differed only in case from an old one is now a key of its own.
func TestMigrate_UpgradesInPlace(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			cfg := Config{DataDir: t.TempDir()}
			old := &DB{dialect: sqliteDialect}
			var err error
			if backend == "mysql" {
				cfg = Config{MySQLDSN: testenv.MySQLDSN(t)}
				dsn, derr := mysqlDSN(cfg.MySQLDSN)
				if derr != nil {
					t.Fatal(derr)
				}
				old.dialect = mysqlDialect
				old.db, err = sql.Open("mysql", dsn)
			} else {
				old.db, err = sql.Open("sqlite", sqliteDSN(filepath.Join(cfg.DataDir, "api-perf.db")))
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := old.migrate(ctx, 1); err != nil {
				t.Fatal(err)
			}
			now, ago := "CURRENT_TIMESTAMP(6)", "CURRENT_TIMESTAMP(6) - INTERVAL 2 DAY"
			if backend == "sqlite" {
				now, ago = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 days')"
			}
			for _, q := range []string{
				"INSERT INTO products (name, price, stock) VALUES ('p', 100, 10)",
				"INSERT INTO orders (product_id, quantity, unit_price, total, idempotency_key) VALUES (1, 1, 100, 100, 'order-abc')",
				"INSERT INTO orders (product_id, quantity, unit_price, total) VALUES (1, 2, 100, 200)",
				"INSERT INTO orders (product_id, quantity, unit_price, total) VALUES (1, 3, 100, 300)",
				"DELETE FROM orders WHERE id = 3",
				"INSERT INTO idempotency_keys (idem_key, request_hash, status_code, body, created_at) VALUES ('order-abc', ?, 201, '{\"id\":1}', " + now + ")",
				"INSERT INTO idempotency_keys (idem_key, request_hash, created_at) VALUES ('claimed', ?, " + now + ")",
				"INSERT INTO idempotency_keys (idem_key, request_hash, status_code, body, created_at) VALUES ('stale', ?, 201, '{\"id\":2}', " + ago + ")",
			} {
				var args []any
				if len(q) > 30 && q[:28] == "INSERT INTO idempotency_keys" {
					args = append(args, make([]byte, 32))
				}
				if _, err := old.db.ExecContext(ctx, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			old.db.Close()

			db, err := Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			orders, err := db.Orders(ctx, apiperf.OrderFilter{Page: apiperf.Page{Limit: 10}})
			if err != nil || len(orders) != 2 || orders[0].ID != 1 || orders[1].ID != 2 || orders[1].Quantity != 2 {
				t.Fatalf("orders after the upgrade: %+v, %v", orders, err)
			}
			var keys []string
			rows, err := db.db.QueryContext(ctx, "SELECT idem_key FROM idempotency_records WHERE scope = ?", apiperf.SharedScope[:])
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			rows.Close()
			if len(keys) != 1 || keys[0] != "order-abc" {
				t.Fatalf("records after the upgrade: %q, want only the completed, unexpired order-abc", keys)
			}
			p := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: 1, Quantity: 1},
				Key: &apiperf.IdempotencyKey{Key: "ORDER-ABC"},
				Respond: func(o *apiperf.Order, err error) apiperf.StoredResponse {
					return apiperf.StoredResponse{Status: 201, Body: []byte("{}")}
				}}
			db.PlaceOrders(ctx, []*apiperf.OrderPlacement{p})
			if p.Err != nil || p.Order == nil || p.Order.ID != 4 {
				t.Fatalf("ORDER-ABC after the upgrade: %+v, %v; want a new order with id 4", p.Order, p.Err)
			}
		})
	}
}

// TestMigrate_RerunsAfterAnInterruption records fewer migrations than were
// applied, as a connection lost between a migration's last statement and
// its version row leaves it on MySQL (which commits each DDL statement on
// its own; SQLite applies migrations in one transaction), and migrates
// again: the statements already applied must not stop the rest.
func TestMigrate_RerunsAfterAnInterruption(t *testing.T) {
	for _, backend := range testenv.Backends() {
		if backend != "mysql" {
			continue
		}
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			cfg := Config{MySQLDSN: testenv.MySQLDSN(t)}
			db, err := Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.db.ExecContext(ctx, "DELETE FROM schema_migrations WHERE version > 1"); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrating again: %v", err)
			}
			if err := db.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
