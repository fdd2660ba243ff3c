package storage

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/golang-migrate/migrate/v4/database"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
)

// legacyMigrate builds the database a release before golang-migrate left
// behind at version upTo, with that release's bookkeeping: it is kept here,
// and only here, to make such databases. Each migration's statements were
// split on semicolons at line ends and run one by one, then a
// schema_migrations row recorded the version. The up files are the ones
// those releases shipped, renamed.
func legacyMigrate(tb testing.TB, db *sql.DB, d *dialect, upTo int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		applied_at TEXT NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	for _, m := range d.migrations() {
		if m.Version > upTo {
			break
		}
		body, err := fs.ReadFile(d.migrationFS(), fmt.Sprintf("%04d_%s.up.sql", m.Version, m.Name))
		if err != nil {
			tb.Fatal(err)
		}
		for _, stmt := range legacySplit(string(body)) {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				tb.Fatalf("migration %v: %v", m, err)
			}
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
			m.Version, time.Now().UTC().Format(time.RFC3339)); err != nil {
			tb.Fatal(err)
		}
	}
}

// legacySplit is how those releases split a migration file: on semicolons
// that end a line, dropping comment lines.
func legacySplit(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// freshDatabase is a new, empty database of backend: its Config, its
// resolved target, and a plain pool on it for the test's own queries.
func freshDatabase(tb testing.TB, backend string) (Config, target, *sql.DB) {
	tb.Helper()
	cfg := Config{DataDir: tb.TempDir()}
	if backend == "mysql" {
		cfg = Config{MySQLDSN: testenv.MySQLDSN(tb)}
	}
	t, err := resolve(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sql.Open(t.dialect.name, t.dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return cfg, t, db
}

// migrateTo brings t's schema to version v with golang-migrate.
func migrateTo(tb testing.TB, t target, v int) {
	tb.Helper()
	_, err := t.migrate(context.Background(), nil, func(mg *migrator) error {
		if v == 0 {
			return nil
		}
		return mg.failure(mg.m.Migrate(uint(v)))
	})
	if err != nil {
		tb.Fatalf("migrate to %d: %v", v, err)
	}
}

var autoIncrement = regexp.MustCompile(` AUTO_INCREMENT=\d+`)

// schemaDump describes the tables and indexes of the service, leaving out
// the bookkeeping, in a form in which two schemas built by different routes
// compare equal when they are the same: MySQL's SHOW CREATE TABLE without
// the AUTO_INCREMENT counter, SQLite's stored CREATE statements without
// quotes and with spaces collapsed.
func schemaDump(tb testing.TB, db *sql.DB, d *dialect) string {
	tb.Helper()
	ctx := context.Background()
	skip := map[string]bool{versionTable: true, legacyTable: true, "version_unique": true, "sqlite_sequence": true}
	var b strings.Builder
	if d == mysqlDialect {
		for _, name := range queryStrings(tb, db, "SHOW TABLES") {
			if skip[name] {
				continue
			}
			var table, create string
			if err := db.QueryRowContext(ctx, "SHOW CREATE TABLE `"+name+"`").Scan(&table, &create); err != nil {
				tb.Fatal(err)
			}
			b.WriteString(autoIncrement.ReplaceAllString(create, "") + "\n")
		}
		return b.String()
	}
	rows, err := db.QueryContext(ctx, "SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ, name, create string
		if err := rows.Scan(&typ, &name, &create); err != nil {
			tb.Fatal(err)
		}
		if skip[name] || strings.HasPrefix(name, "sqlite_autoindex_"+versionTable) {
			continue
		}
		create = strings.Join(strings.Fields(strings.ReplaceAll(create, `"`, "")), " ")
		fmt.Fprintf(&b, "%s %s: %s\n", typ, name, create)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

func queryStrings(tb testing.TB, db *sql.DB, q string, args ...any) []string {
	tb.Helper()
	rows, err := db.QueryContext(context.Background(), q, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func tableExists(tb testing.TB, db *sql.DB, d *dialect, name string) bool {
	tb.Helper()
	q := "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
	if d == sqliteDialect {
		q = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	}
	var n int
	if err := db.QueryRowContext(context.Background(), q, name).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n > 0
}

// wantState checks golang-migrate's row.
func wantState(tb testing.TB, db *sql.DB, version int, dirty bool) {
	tb.Helper()
	v, d, ok, err := readVersionRow(context.Background(), db)
	if err != nil || !ok || v != version || d != dirty {
		tb.Fatalf("schema_version holds %d dirty=%v (row %v, %v), want %d dirty=%v", v, d, ok, err, version, dirty)
	}
}

func versions(steps []Migration) []int {
	out := make([]int, len(steps))
	for i, s := range steps {
		out[i] = s.Version
	}
	return out
}

// lastVersion is the last migration of both dialects; bump it with each
// new migration.
const lastVersion = 5

// legacyLast is the last migration releases before golang-migrate shipped:
// databases they left behind are at most at it.
const legacyLast = 3

// span is the versions from a to b, both included.
func span(a, b int) []int {
	var out []int
	for v := a; v <= b; v++ {
		out = append(out, v)
	}
	return out
}

// TestMigrate_AdoptsPreviousBookkeeping builds a database with the
// bookkeeping of releases before golang-migrate, at each version they
// reached, and migrates it: the recorded version is taken over, only the
// migrations after it run (a migration that ran again would fail on the
// tables it creates, or show in Steps), and the schema ends up the one a
// new database gets. The old table stays as it was, for the replicas of
// the previous release that read it during a rolling update.
func TestMigrate_AdoptsPreviousBookkeeping(t *testing.T) {
	ctx := context.Background()
	for _, backend := range testenv.Backends() {
		for n := 1; n <= legacyLast; n++ {
			t.Run(fmt.Sprintf("%s/at%d", backend, n), func(t *testing.T) {
				cfg, tgt, db := freshDatabase(t, backend)
				legacyMigrate(t, db, tgt.dialect, n)

				st, err := ReadMigrationStatus(ctx, cfg)
				if err != nil || st.Version != n || !st.Legacy || st.Dirty || len(st.Pending) != lastVersion-n {
					t.Fatalf("status of the old database: %+v, %v", st, err)
				}
				res, err := Migrate(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if res.Adopted != n || !slices.Equal(versions(res.Steps), span(n+1, lastVersion)) {
					t.Fatalf("migrating an old database at %d: %+v, want version %d taken over and %v applied", n, res, n, span(n+1, lastVersion))
				}
				wantState(t, db, lastVersion, false)
				if got := queryStrings(t, db, "SELECT CAST(MAX(version) AS CHAR) FROM "+legacyTable); !slices.Equal(got, []string{fmt.Sprint(n)}) {
					t.Fatalf("the old bookkeeping now says %v, want it left at %d", got, n)
				}
				_, ref, refDB := freshDatabase(t, backend)
				migrateTo(t, ref, lastVersion)
				if got, want := schemaDump(t, db, tgt.dialect), schemaDump(t, refDB, ref.dialect); got != want {
					t.Fatalf("upgraded schema differs from a new database's:\n%s\nwant:\n%s", got, want)
				}
				if res, err := Migrate(ctx, cfg); err != nil || res.Adopted != 0 || len(res.Steps) != 0 {
					t.Fatalf("migrating again: %+v, %v; want nothing done", res, err)
				}
				store, err := Open(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer store.Close()
				if err := store.Ping(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestMigrate_UpgradesInPlace builds a database at the first schema with
// the data the old idempotency design left behind, upgrades it by opening
// it, and checks that orders keep their ids (and that deleted ids stay
// retired), completed responses carry over into the shared scope,
// unfinished claims go, and a key that differed only in case from an old
// one is now a key of its own.
func TestMigrate_UpgradesInPlace(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			cfg, tgt, old := freshDatabase(t, backend)
			legacyMigrate(t, old, tgt.dialect, 1)
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
				if strings.HasPrefix(q, "INSERT INTO idempotency_keys") {
					args = append(args, make([]byte, 32))
				}
				if _, err := old.ExecContext(ctx, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			old.Close()

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
			keys := queryStrings(t, db.db, "SELECT idem_key FROM idempotency_records WHERE scope = ?", apiperf.SharedScope[:])
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

// TestMigrate_ConcurrentAppliesEachOnce starts four migrations at once on
// one database, new or left by a release before golang-migrate: each
// migration runs exactly once between them, the old version is taken over
// once, and none of them fails.
func TestMigrate_ConcurrentAppliesEachOnce(t *testing.T) {
	for _, backend := range testenv.Backends() {
		for _, from := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/from%d", backend, from), func(t *testing.T) {
				cfg, tgt, db := freshDatabase(t, backend)
				if from > 0 {
					legacyMigrate(t, db, tgt.dialect, from)
				}
				var (
					wg      sync.WaitGroup
					mu      sync.Mutex
					applied []int
					adopted []int
					errs    []error
				)
				start := make(chan struct{})
				for range 4 {
					wg.Go(func() {
						<-start
						res, err := Migrate(context.Background(), cfg)
						mu.Lock()
						defer mu.Unlock()
						applied = append(applied, versions(res.Steps)...)
						if res.Adopted > 0 {
							adopted = append(adopted, res.Adopted)
						}
						if err != nil {
							errs = append(errs, err)
						}
					})
				}
				close(start)
				wg.Wait()
				if len(errs) > 0 {
					t.Fatal(errors.Join(errs...))
				}
				slices.Sort(applied)
				if !slices.Equal(applied, span(from+1, lastVersion)) {
					t.Fatalf("migrations applied between the four: %v, want %v once each", applied, span(from+1, lastVersion))
				}
				if from > 0 && !slices.Equal(adopted, []int{from}) || from == 0 && len(adopted) > 0 {
					t.Fatalf("versions taken over: %v, want %d once", adopted, from)
				}
				wantState(t, db, lastVersion, false)
			})
		}
	}
}

// TestMigrateDown_RestoresEachVersion undoes the migrations one at a time:
// after each, the schema is the one a new database migrated up to that
// version has; the data a down migration can keep is kept; and migrating
// up again from nothing works.
func TestMigrateDown_RestoresEachVersion(t *testing.T) {
	ctx := context.Background()
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			cfg, tgt, db := freshDatabase(t, backend)
			if _, err := Migrate(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			d := tgt.dialect
			for _, q := range []string{
				"INSERT INTO products (name, price, stock) VALUES ('p', 100, 10)",
				"INSERT INTO orders (product_id, quantity, unit_price, total) VALUES (1, 1, 100, 100)",
				"INSERT INTO orders (product_id, quantity, unit_price, total) VALUES (1, 2, 100, 200)",
				"DELETE FROM orders WHERE id = 1",
				// Counters past MySQL's version 3 columns (migration 4 widened them).
				"INSERT INTO products (name, price, stock, version) VALUES ('big', 100, 5000000000, 3000000000)",
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			record := d.expand("INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) VALUES (?, ?, ?, 201, ?, {now}, {expires})")
			client := make([]byte, 32)
			client[0] = 1
			for _, r := range []struct {
				scope []byte
				key   string
			}{{apiperf.SharedScope[:], "shared-key"}, {client, "client-key"}} {
				if _, err := db.ExecContext(ctx, record, r.scope, r.key, make([]byte, 32), []byte(`{"id":2}`)); err != nil {
					t.Fatal(err)
				}
			}

			for v := lastVersion; v >= 1; v-- {
				res, err := MigrateDown(ctx, cfg, 1)
				if err != nil || len(res.Steps) != 1 || res.Steps[0] != d.migrations()[v-1] {
					t.Fatalf("undoing %d: %+v, %v", v, res, err)
				}
				wantStatus(t, cfg, v-1)
				_, ref, refDB := freshDatabase(t, backend)
				migrateTo(t, ref, v-1)
				if got, want := schemaDump(t, db, d), schemaDump(t, refDB, d); got != want {
					t.Fatalf("schema after undoing %d:\n%s\nwant the schema at %d:\n%s", v, got, v-1, want)
				}
				switch v {
				case 4: // counters the narrow columns cannot hold are cut to their largest values
					want := []string{"10 1", "5000000000 3000000000"}
					if d == mysqlDialect {
						want[1] = "4294967295 2147483647"
					}
					if got := queryStrings(t, db, "SELECT CONCAT(stock, ' ', version) FROM products ORDER BY id"); !slices.Equal(got, want) {
						t.Fatalf("stock and version after undoing 4: %q, want %q", got, want)
					}
				case 3: // orders keep their ids
					if got := queryStrings(t, db, "SELECT CAST(id AS CHAR) FROM orders"); !slices.Equal(got, []string{"2"}) {
						t.Fatalf("orders after undoing 3: %v", got)
					}
				case 2: // the shared scope's response goes back, the client's cannot
					if got := queryStrings(t, db, "SELECT idem_key FROM idempotency_keys"); !slices.Equal(got, []string{"shared-key"}) {
						t.Fatalf("idempotency keys after undoing 2: %v", got)
					}
				}
			}
			if _, err := MigrateDown(ctx, cfg, 1); apiperf.ErrorCode(err) != apiperf.EINVALID {
				t.Fatalf("undoing past version 0: %v", err)
			}
			res, err := Migrate(ctx, cfg)
			if err != nil || !slices.Equal(versions(res.Steps), span(1, lastVersion)) {
				t.Fatalf("migrating up again: %+v, %v", res, err)
			}
			res, err = MigrateDown(ctx, cfg, lastVersion)
			newestFirst := span(1, lastVersion)
			slices.Reverse(newestFirst)
			if err != nil || !slices.Equal(versions(res.Steps), newestFirst) {
				t.Fatalf("undoing all at once: %+v, %v", res, err)
			}
			wantStatus(t, cfg, 0)
		})
	}
}

func wantStatus(tb testing.TB, cfg Config, version int) {
	tb.Helper()
	st, err := ReadMigrationStatus(context.Background(), cfg)
	if err != nil || st.Version != version || st.Dirty || st.Legacy || st.Latest != lastVersion || len(st.Pending) != lastVersion-version ||
		len(st.Pending) > 0 && st.Pending[0].Version != version+1 {
		tb.Fatalf("status: %+v, %v; want version %d, clean", st, err, version)
	}
}

// TestMigrate4_WidensOnlyTheProductCounters compares the schema before and
// after migration 4: on MySQL, products.stock and products.version change
// from INT to BIGINT and nothing else changes (NOT NULL, defaults, the
// column order, the CHECK constraints and every other table stay as they
// were); on SQLite, whose integers are already 64-bit, nothing changes.
func TestMigrate4_WidensOnlyTheProductCounters(t *testing.T) {
	// MariaDB shows display widths (int(10) unsigned, bigint(20)); MySQL 8
	// does not. The widths say nothing about what a column holds.
	widths := regexp.MustCompile("(?m)^(  `(?:stock|version)` (?:big)?int)\\(\\d+\\)")
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			_, tgt, db := freshDatabase(t, backend)
			migrateTo(t, tgt, 3)
			before := schemaDump(t, db, tgt.dialect)
			migrateTo(t, tgt, 4)
			after := widths.ReplaceAllString(schemaDump(t, db, tgt.dialect), "$1")
			want := before
			if tgt.dialect == mysqlDialect {
				want = widths.ReplaceAllString(want, "$1")
				for _, col := range []string{"stock", "version"} {
					old := "  `" + col + "` int "
					if strings.Count(want, old) != 1 {
						t.Fatalf("the schema at 3 has no INT %s column:\n%s", col, before)
					}
					want = strings.Replace(want, old, "  `"+col+"` bigint ", 1)
				}
			}
			if after != want {
				t.Fatalf("schema after migration 4:\n%s\nwant:\n%s", after, want)
			}
		})
	}
}

// TestMigrate_FailedMigrationIsDirty runs a migration whose second
// statement fails. The schema is left dirty at its version, holding what
// MySQL committed before the failure (SQLite rolls the migration back);
// nothing migrates, up or down, until the version is forced; after the
// migration is fixed and the version forced, migrating finishes the job.
func TestMigrate_FailedMigrationIsDirty(t *testing.T) {
	ctx := context.Background()
	good := fstest.MapFS{
		"1_first.up.sql":    {Data: []byte("CREATE TABLE first (id INTEGER PRIMARY KEY);\n")},
		"1_first.down.sql":  {Data: []byte("DROP TABLE first;\n")},
		"2_second.up.sql":   {Data: []byte("CREATE TABLE IF NOT EXISTS second (id INTEGER PRIMARY KEY);\nCREATE TABLE third (id INTEGER PRIMARY KEY);\n")},
		"2_second.down.sql": {Data: []byte("DROP TABLE third;\nDROP TABLE second;\n")},
	}
	bad := fstest.MapFS{}
	for name, f := range good {
		bad[name] = f
	}
	bad["2_second.up.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE IF NOT EXISTS second (id INTEGER PRIMARY KEY);\nTHIS IS NOT SQL;\n")}

	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			_, tgt, db := freshDatabase(t, backend)
			res, err := tgt.migrate(ctx, bad, (*migrator).up)
			var dirty *DirtyError
			if !errors.As(err, &dirty) || dirty.Version != 2 || dirty.Err == nil || !slices.Equal(versions(res.Steps), []int{1}) {
				t.Fatalf("a failing migration: %+v, %v; want migration 1 applied, then dirty at 2 with the cause", res, err)
			}
			if !strings.Contains(err.Error(), "dirty at version 2") {
				t.Fatalf("the error does not say where the schema is: %v", err)
			}
			wantState(t, db, 2, true)
			if got := tableExists(t, db, tgt.dialect, "second"); got != (backend == "mysql") {
				t.Fatalf("second exists: %v; MySQL commits each DDL statement, SQLite rolls the migration back", got)
			}

			for name, op := range map[string]func(*migrator) error{
				"up":   (*migrator).up,
				"down": func(mg *migrator) error { return mg.down(1) },
			} {
				res, err := tgt.migrate(ctx, good, op)
				if !errors.As(err, &dirty) || dirty.Version != 2 || dirty.Err != nil || len(res.Steps) != 0 {
					t.Fatalf("%s on a dirty schema: %+v, %v; want it refused", name, res, err)
				}
			}
			if _, err := tgt.migrate(ctx, good, func(mg *migrator) error { return mg.force(1) }); err != nil {
				t.Fatal(err)
			}
			wantState(t, db, 1, false)
			res, err = tgt.migrate(ctx, good, (*migrator).up)
			if err != nil || !slices.Equal(versions(res.Steps), []int{2}) {
				t.Fatalf("migrating after the fix: %+v, %v", res, err)
			}
			wantState(t, db, 2, false)
		})
	}
}

// TestMigrate_LostConnectionLeavesDirty cuts the connection while a MySQL
// migration runs, between two of its statements. The migration is reported
// dirty, at once and on every later attempt, not retried as if nothing had
// happened; forcing the version before it and migrating again completes it
// (its statements can run twice).
func TestMigrate_LostConnectionLeavesDirty(t *testing.T) {
	if !slices.Contains(testenv.Backends(), "mysql") {
		t.Skip("MySQL only: SQLite has no connection to lose")
	}
	ctx := context.Background()
	direct := testenv.MySQLDSN(t)
	c, err := mysql.ParseDSN(direct)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, c.Addr)
	c.Addr = proxy.Addr()
	tgt, err := resolve(Config{MySQLDSN: c.FormatDSN()})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", direct)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	slow := fstest.MapFS{
		"1_slow.up.sql": {Data: []byte("CREATE TABLE IF NOT EXISTS slow_a (id INT PRIMARY KEY);\n" +
			"DO SLEEP(1);\nCREATE TABLE IF NOT EXISTS slow_b (id INT PRIMARY KEY);\n")},
		"1_slow.down.sql": {Data: []byte("DROP TABLE IF EXISTS slow_b;\nDROP TABLE IF EXISTS slow_a;\n")},
	}

	done := make(chan error, 1)
	go func() {
		_, err := tgt.migrate(ctx, slow, (*migrator).up)
		done <- err
	}()
	for !tableExists(t, db, mysqlDialect, "slow_a") {
		time.Sleep(10 * time.Millisecond)
	}
	proxy.Down()
	err = <-done
	var dirty *DirtyError
	if !errors.As(err, &dirty) || dirty.Version != 1 || dirty.Err == nil {
		t.Fatalf("a migration cut off part-way: %v; want dirty at 1 with the lost connection", err)
	}
	proxy.Up()
	wantState(t, db, 1, true)
	if _, err := tgt.migrate(ctx, slow, (*migrator).up); !errors.As(err, &dirty) || dirty.Version != 1 {
		t.Fatalf("migrating again: %v; want dirty at 1", err)
	}
	if _, err := tgt.migrate(ctx, slow, func(mg *migrator) error { return mg.force(0) }); err != nil {
		t.Fatal(err)
	}
	res, err := tgt.migrate(ctx, slow, (*migrator).up)
	if err != nil || !slices.Equal(versions(res.Steps), []int{1}) || !tableExists(t, db, mysqlDialect, "slow_b") {
		t.Fatalf("migrating after forcing 0: %+v, %v", res, err)
	}
	wantState(t, db, 1, false)
}

// TestOpen_RidesOutALostConnection starts Open while MySQL is unreachable
// and brings it back a moment later: Open retries and succeeds.
func TestOpen_RidesOutALostConnection(t *testing.T) {
	if !slices.Contains(testenv.Backends(), "mysql") {
		t.Skip("MySQL only")
	}
	c, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, c.Addr)
	c.Addr = proxy.Addr()
	proxy.Down()
	done := make(chan error, 1)
	go func() {
		db, err := Open(context.Background(), Config{MySQLDSN: c.FormatDSN()})
		if err == nil {
			err = db.Ping(context.Background())
			db.Close()
		}
		done <- err
	}()
	time.Sleep(150 * time.Millisecond)
	proxy.Up()
	if err := <-done; err != nil {
		t.Fatalf("Open across a short outage: %v", err)
	}
}

// TestDB_Ping holds /readyz's schema check to the bookkeeping: ready when
// every migration of this build is cleanly applied, including when the
// schema is ahead (a newer release migrated, or is migrating); unready
// when a migration is missing or its own is dirty. Open refuses a dirty
// schema.
func TestDB_Ping(t *testing.T) {
	ctx := context.Background()
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			cfg, _, raw := freshDatabase(t, backend)
			db, err := Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, c := range []struct {
				version int
				dirty   bool
				ready   bool
			}{{lastVersion, false, true}, {lastVersion + 1, false, true}, {lastVersion + 1, true, true},
				{lastVersion, true, false}, {lastVersion - 1, false, false}, {0, false, false}} {
				if _, err := raw.ExecContext(ctx, "UPDATE "+versionTable+" SET version = ?, dirty = ?", c.version, c.dirty); err != nil {
					t.Fatal(err)
				}
				err := db.Ping(ctx)
				if c.ready && err != nil || !c.ready && apiperf.ErrorCode(err) != apiperf.EUNAVAILABLE {
					t.Errorf("version %d dirty=%v: Ping says %v, want ready=%v", c.version, c.dirty, err, c.ready)
				}
			}
			if _, err := raw.ExecContext(ctx, "UPDATE "+versionTable+" SET version = ?, dirty = ?", lastVersion, true); err != nil {
				t.Fatal(err)
			}
			_, err = Open(ctx, cfg)
			var dirty *DirtyError
			if !errors.As(err, &dirty) || dirty.Version != lastVersion {
				t.Fatalf("Open on a dirty schema: %v", err)
			}
			if st, err := ReadMigrationStatus(ctx, cfg); err != nil || !st.Dirty || st.Version != lastVersion {
				t.Fatalf("status of a dirty schema: %+v, %v", st, err)
			}
		})
	}
}

// TestForceMigrationVersion checks the bounds, and that forcing 0 retires
// the bookkeeping of releases before golang-migrate, which would otherwise
// be taken over again at the next start.
func TestForceMigrationVersion(t *testing.T) {
	ctx := context.Background()
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			cfg, tgt, db := freshDatabase(t, backend)
			legacyMigrate(t, db, tgt.dialect, legacyLast)
			if _, err := Migrate(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			for _, v := range []int{-1, lastVersion + 1} {
				if err := ForceMigrationVersion(ctx, cfg, v); apiperf.ErrorCode(err) != apiperf.EINVALID {
					t.Errorf("force %d: %v", v, err)
				}
			}
			for _, n := range []int{0, -1, lastVersion + 1} {
				if _, err := MigrateDown(ctx, cfg, n); apiperf.ErrorCode(err) != apiperf.EINVALID {
					t.Errorf("down %d: %v", n, err)
				}
			}
			if err := ForceMigrationVersion(ctx, cfg, 0); err != nil {
				t.Fatal(err)
			}
			if tableExists(t, db, tgt.dialect, legacyTable) {
				t.Fatal("forcing 0 left the old bookkeeping, which the next start would take over")
			}
			if st, err := ReadMigrationStatus(ctx, cfg); err != nil || st.Version != 0 || st.Legacy {
				t.Fatalf("status after forcing 0: %+v, %v", st, err)
			}
			if err := ForceMigrationVersion(ctx, cfg, lastVersion); err != nil {
				t.Fatal(err)
			}
			wantState(t, db, lastVersion, false)
		})
	}
}

// TestMigrate_WaitsForTheLock holds golang-migrate's MySQL lock for longer
// than the library waits for it (10 s): Migrate keeps waiting, starts only
// once the lock is free, and applies everything. It takes 11 s of sleep,
// run beside the package's other tests.
func TestMigrate_WaitsForTheLock(t *testing.T) {
	if !slices.Contains(testenv.Backends(), "mysql") {
		t.Skip("MySQL only: the SQLite lock file has no give-up time")
	}
	if testing.Short() {
		t.Skip("11 s of waiting")
	}
	t.Parallel()
	ctx := context.Background()
	cfg, _, db := freshDatabase(t, "mysql")
	c, err := mysql.ParseDSN(cfg.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	id, err := database.GenerateAdvisoryLockId(c.DBName + ":" + versionTable)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	var got int
	if err := holder.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", id).Scan(&got); err != nil || got != 1 {
		t.Fatalf("taking the lock: %d, %v", got, err)
	}
	done := make(chan error, 1)
	go func() {
		res, err := Migrate(ctx, cfg)
		if err == nil && len(res.Steps) != lastVersion {
			err = fmt.Errorf("applied %v, want all %d", res.Steps, lastVersion)
		}
		done <- err
	}()
	time.Sleep(11 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Migrate returned while the lock was held: %v", err)
	default:
	}
	if _, err := holder.ExecContext(ctx, "SELECT RELEASE_LOCK(?)", id); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantState(t, db, lastVersion, false)
}

// TestOpen_SchemaAhead starts this build on a schema a newer release
// migrated past it, or is migrating: as during a rolling update, or a
// restart of an older replica. It starts and is ready; golang-migrate
// alone would fail, having no file for the newer version.
func TestOpen_SchemaAhead(t *testing.T) {
	ctx := context.Background()
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			cfg, tgt, raw := freshDatabase(t, backend)
			migrateTo(t, tgt, lastVersion)
			for _, dirty := range []bool{false, true} {
				if _, err := raw.ExecContext(ctx, "UPDATE "+versionTable+" SET version = ?, dirty = ?", lastVersion+1, dirty); err != nil {
					t.Fatal(err)
				}
				db, err := Open(ctx, cfg)
				if err != nil {
					t.Fatalf("Open on version %d, dirty=%v: %v", lastVersion+1, dirty, err)
				}
				err = db.Ping(ctx)
				db.Close()
				if err != nil {
					t.Fatalf("Ping on version %d, dirty=%v: %v", lastVersion+1, dirty, err)
				}
				if res, err := Migrate(ctx, cfg); err != nil || len(res.Steps) > 0 {
					t.Fatalf("Migrate on version %d, dirty=%v: %+v, %v", lastVersion+1, dirty, res, err)
				}
			}
		})
	}
}

// TestMigrate_KeyedOrdersWithoutACompletedRecordKeepTheirKey upgrades a
// database in which keyed orders committed without their response being
// stored, the states the release before the single-transaction design left
// behind when its read-back failed after COMMIT (the claim was then
// abandoned, reproduction 4 of issue 10) or when the process died between
// the order and the completion of its claim (reproductions 5 and 6). That
// release still answered a retry with that key with the existing order:
// orders.idempotency_key was unique, and a duplicate led to the order
// holding the key. The upgrade drops the unfinished claims and the column,
// so it must carry those keys over, or the same retry places a second
// order for the key. A keyed order older than the 24 hours a key lives is
// not carried: its key is free.
func TestMigrate_KeyedOrdersWithoutACompletedRecordKeepTheirKey(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			cfg, tgt, old := freshDatabase(t, backend)
			legacyMigrate(t, old, tgt.dialect, 1)
			now, ago := "CURRENT_TIMESTAMP(6)", "CURRENT_TIMESTAMP(6) - INTERVAL 2 DAY"
			if backend == "sqlite" {
				now, ago = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 days')"
			}
			openClaim := sha256.Sum256([]byte("1:2"))
			for _, q := range []string{
				"INSERT INTO products (name, price, stock) VALUES ('p', 100, 7)",
				// A keyed order older than a key lives: its key is free.
				"INSERT INTO orders (product_id, quantity, unit_price, total, idempotency_key, created_at) VALUES (1, 3, 100, 300, 'ancient', " + ago + ")",
				// Committed, answered 503, claim abandoned: no idempotency_keys row.
				"INSERT INTO orders (product_id, quantity, unit_price, total, idempotency_key) VALUES (1, 1, 100, 100, 'lost-answer')",
				// Committed, process died before completing the claim.
				"INSERT INTO orders (product_id, quantity, unit_price, total, idempotency_key) VALUES (1, 2, 100, 200, 'open-claim')",
				"INSERT INTO idempotency_keys (idem_key, request_hash, created_at) VALUES ('open-claim', ?, " + now + ")",
			} {
				var args []any
				if strings.HasPrefix(q, "INSERT INTO idempotency_keys") {
					args = append(args, openClaim[:])
				}
				if _, err := old.ExecContext(ctx, q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			old.Close()

			db, err := Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, c := range []struct {
				key      string
				quantity int64
				orderID  int64
			}{{"lost-answer", 1, 2}, {"open-claim", 2, 3}} {
				in := apiperf.OrderInput{ProductID: 1, Quantity: c.quantity}
				h := sha256.Sum256(fmt.Appendf(nil, "%d:%d", in.ProductID, in.Quantity))
				p := &apiperf.OrderPlacement{In: in, Key: &apiperf.IdempotencyKey{Key: c.key, RequestHash: h},
					Respond: func(o *apiperf.Order, err error) apiperf.StoredResponse {
						return apiperf.StoredResponse{Status: 201, Body: fmt.Appendf(nil, `{"id":%d}`, o.ID)}
					}}
				db.PlaceOrders(ctx, []*apiperf.OrderPlacement{p})
				if p.Order != nil {
					t.Errorf("key %s after the upgrade placed order %d; order %d already holds it", c.key, p.Order.ID, c.orderID)
					continue
				}
				var o struct{ ID int64 }
				if p.Err != nil || !p.Replayed || p.Stored == nil || p.Stored.Status != 201 ||
					json.Unmarshal(p.Stored.Body, &o) != nil || o.ID != c.orderID {
					t.Errorf("key %s after the upgrade: stored %+v, err %v; want a replay of order %d", c.key, p.Stored, p.Err, c.orderID)
				}
			}
			var n int
			if err := db.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders").Scan(&n); err != nil || n != 3 {
				t.Fatalf("%d orders (%v) after retrying the two keys, want the 3 there were", n, err)
			}
			in := apiperf.OrderInput{ProductID: 1, Quantity: 3}
			ancient := &apiperf.OrderPlacement{In: in, Key: &apiperf.IdempotencyKey{Key: "ancient", RequestHash: sha256.Sum256([]byte("1:3"))},
				Respond: func(o *apiperf.Order, err error) apiperf.StoredResponse {
					return apiperf.StoredResponse{Status: 201, Body: []byte("{}")}
				}}
			db.PlaceOrders(ctx, []*apiperf.OrderPlacement{ancient})
			if ancient.Err != nil || ancient.Order == nil {
				t.Fatalf("a key whose order is two days old: %+v, %v; want a new order", ancient.Stored, ancient.Err)
			}
		})
	}
}
