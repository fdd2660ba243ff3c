package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	apiperf "github.com/api-perf/api-perf"
)

//go:embed migrations
var migrationsFS embed.FS

// migrationLock names the MySQL advisory lock that serialises migrations
// across every replica starting at once.
const migrationLock = "api-perf:migrations"

// migrationFiles lists the dialect's migrations in the order they apply.
func migrationFiles(d *dialect) []string {
	names, _ := fs.Glob(migrationsFS, "migrations/"+d.name+"/*.sql")
	sort.Strings(names)
	return names
}

// Migrate applies pending migrations exactly once, however many processes
// call it at the same time: MySQL holds GET_LOCK on one connection for the
// duration; SQLite runs them in one immediate transaction, which takes the
// database's write lock.
func (d *DB) Migrate(ctx context.Context) error {
	return d.migrate(ctx, len(migrationFiles(d.dialect)))
}

// migrate applies the migrations up to version upTo.
func (d *DB) migrate(ctx context.Context, upTo int) (err error) {
	defer apiperf.Wrap(&err, "Migrate")
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return mapError(err)
	}
	defer conn.Close()

	if d.dialect.name == "mysql" {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", migrationLock).Scan(&got); err != nil {
			return mapError(err)
		}
		if got.Int64 != 1 {
			return apiperf.Errorf(apiperf.EUNAVAILABLE, "timed out waiting for the migration lock")
		}
		defer conn.ExecContext(context.Background(), "SELECT RELEASE_LOCK(?)", migrationLock) //nolint:errcheck // the lock also ends with the connection
		return d.applyMigrations(ctx, conn, upTo)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return mapError(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := d.applyMigrations(ctx, tx, upTo); err != nil {
		return err
	}
	return mapError(tx.Commit())
}

// execer is what migrations need of a connection or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (d *DB) applyMigrations(ctx context.Context, c execer, upTo int) error {
	if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		applied_at TEXT NOT NULL)`); err != nil {
		return mapError(err)
	}
	have, err := d.schemaVersion(ctx, c)
	if err != nil {
		return mapError(err)
	}
	for i, name := range migrationFiles(d.dialect) {
		version := i + 1
		if version <= have || version > upTo {
			continue
		}
		body, err := migrationsFS.ReadFile(name)
		if err != nil {
			return err
		}
		for _, stmt := range splitStatements(string(body)) {
			if _, err := c.ExecContext(ctx, stmt); err != nil && !alreadyApplied(err) {
				return fmt.Errorf("migration %s: %w", name, mapError(err))
			}
		}
		if _, err := c.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
			version, time.Now().UTC().Format(time.RFC3339)); err != nil {
			return fmt.Errorf("migration %s: %w", name, mapError(err))
		}
	}
	return nil
}

// schemaVersion is the highest applied migration, 0 for a new database.
func (d *DB) schemaVersion(ctx context.Context, c interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	err := c.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v)
	if err != nil && isMissingTable(err) {
		return 0, nil
	}
	return int(v.Int64), err
}

// alreadyApplied reports a MySQL DDL error that means the statement's work
// is done: the table, column or index it creates exists, or the one it
// drops does not. MySQL commits each DDL statement on its own, so a
// migration cut off between its statements (a lost connection at start-up)
// runs again from the top and must get past the ones already applied.
func alreadyApplied(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1050, 1060, 1061, 1091: // table exists, duplicate column, duplicate key, cannot drop
		return true
	}
	return false
}

func isMissingTable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "doesn't exist") || strings.Contains(s, "no such table")
}

// splitStatements splits a migration file on semicolons that end a line,
// dropping comment lines. Migrations keep to that shape.
func splitStatements(body string) []string {
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
