package main

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/storage"
)

// TestRun_Migrate drives `api-perf migrate` through a database's life:
// status of a new one, up, down N, up again, a dirty state reported with
// what to do (by status, up and start-up alike), and force.
func TestRun_Migrate(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			vars := map[string]string{"LOG_LEVEL": "warn"}
			var db *sql.DB
			var err error
			if backend == "mysql" {
				vars["MYSQL_DSN"] = testenv.MySQLDSN(t)
				db, err = sql.Open("mysql", vars["MYSQL_DSN"])
			} else {
				vars["DATA_DIR"] = t.TempDir()
				db, err = sql.Open("sqlite", filepath.Join(vars["DATA_DIR"], "api-perf.db"))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			migrate := func(args ...string) (string, error) {
				t.Helper()
				var stdout, stderr bytes.Buffer
				err := run(context.Background(), append([]string{"migrate"}, args...), env(vars), &stdout, &stderr, nil)
				return stdout.String(), err
			}
			want := func(args []string, wantOut string) {
				t.Helper()
				out, err := migrate(args...)
				if err != nil || out != wantOut {
					t.Fatalf("migrate %v: %v\n%s\nwant:\n%s", args, err, out, wantOut)
				}
			}

			want([]string{"status"}, "database: "+backend+"\nversion:  0\nstate:    clean\n"+
				"pending:  1 init\n          2 idempotency_records\n          3 orders_drop_idempotency_key\n"+
				"          4 widen_product_counters\n          5 replication_heartbeat\n")
			want(nil, "applied 1 init\napplied 2 idempotency_records\napplied 3 orders_drop_idempotency_key\n"+
				"applied 4 widen_product_counters\napplied 5 replication_heartbeat\n"+backend+" schema at version 5, nothing pending\n")
			want([]string{"up"}, backend+" schema at version 5, nothing pending\n")
			want([]string{"down", "4"}, "undid 5 replication_heartbeat\nundid 4 widen_product_counters\nundid 3 orders_drop_idempotency_key\n"+
				"undid 2 idempotency_records\n"+backend+" schema at version 1, 4 pending\n")
			want([]string{"status"}, "database: "+backend+"\nversion:  1\nstate:    clean\n"+
				"pending:  2 idempotency_records\n          3 orders_drop_idempotency_key\n          4 widen_product_counters\n"+
				"          5 replication_heartbeat\n")
			want([]string{"up"}, "applied 2 idempotency_records\napplied 3 orders_drop_idempotency_key\n"+
				"applied 4 widen_product_counters\napplied 5 replication_heartbeat\n"+backend+" schema at version 5, nothing pending\n")

			for _, c := range []struct {
				args []string
				want string
			}{
				{[]string{"down"}, "migrate down needs one number"},
				{[]string{"down", "1", "2"}, "migrate down needs one number"},
				{[]string{"down", "x"}, `"x" is not a positive number`},
				{[]string{"down", "0"}, `"0" is not a positive number`},
				{[]string{"down", "6"}, "cannot undo 6 migrations: the schema is at version 5"},
				{[]string{"force"}, "migrate force needs one number"},
				{[]string{"force", "-1"}, `"-1" is not a version`},
				{[]string{"force", "6"}, "cannot force version 6"},
				{[]string{"status", "now"}, "migrate status takes no arguments"},
				{[]string{"sideways"}, `unknown migrate command "sideways"`},
			} {
				if _, err := migrate(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("migrate %v: %v, want an error saying %q", c.args, err, c.want)
				}
			}

			if _, err := db.Exec("UPDATE schema_version SET dirty = ?", true); err != nil {
				t.Fatal(err)
			}
			out, err := migrate("status")
			if !strings.Contains(out, "state:    dirty: the step to version 5 stopped part-way") {
				t.Errorf("status of a dirty schema:\n%s", out)
			}
			for name, err := range map[string]error{
				"status": err,
				"up":     func() error { _, err := migrate("up"); return err }(),
				"serve":  run(context.Background(), []string{"serve"}, env(vars), &bytes.Buffer{}, &bytes.Buffer{}, nil),
			} {
				if err == nil || !strings.Contains(err.Error(), "dirty at version 5") ||
					!strings.Contains(err.Error(), "'api-perf migrate force <version>'") {
					t.Errorf("%s on a dirty schema: %v; want the state and what to do", name, err)
				}
			}
			want([]string{"force", "5"}, "forced version 5, clean\n"+backend+" schema at version 5, nothing pending\n")
		})
	}
}

// TestPrintMigrationStatus covers the states a live database is hard to
// put in: a version recorded by a release before golang-migrate, and a
// schema ahead of this build.
func TestPrintMigrationStatus(t *testing.T) {
	for _, c := range []struct {
		st   storage.MigrationStatus
		want string
	}{
		{storage.MigrationStatus{Dialect: "mysql", Version: 2, Legacy: true, Latest: 3,
			Pending: []storage.Migration{{Version: 3, Name: "orders_drop_idempotency_key"}}},
			"database: mysql\nversion:  2 (recorded by a release before golang-migrate; the next migrate or start-up takes it over)\n" +
				"state:    clean\npending:  3 orders_drop_idempotency_key\n"},
		{storage.MigrationStatus{Dialect: "sqlite", Version: 5, Dirty: true, Latest: 3},
			"database: sqlite\nversion:  5 (ahead of this build, whose last migration is 3)\n" +
				"state:    dirty: the step to version 5 stopped part-way, or is running in another process\npending:  none\n"},
	} {
		var b bytes.Buffer
		if err := printMigrationStatus(&b, c.st); err != nil || b.String() != c.want {
			t.Errorf("%+v printed:\n%s\nwant:\n%s", c.st, b.String(), c.want)
		}
	}
}
