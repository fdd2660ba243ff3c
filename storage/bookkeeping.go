package storage

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/golang-migrate/migrate/v4/database"
)

// versionTable is golang-migrate's bookkeeping: one row holding the schema's
// version and whether the migration to it is unfinished (dirty). It is not
// the library's default name, schema_migrations, because releases before
// golang-migrate used that name for a table of their own (legacyTable).
const versionTable = "schema_version"

// legacyTable is where releases before golang-migrate recorded each applied
// migration, as (version, applied_at) rows. Migrate takes the highest
// version over once and leaves the table as it was: replicas of such a
// release still running during a rolling update read it to decide that
// their schema is in place, so dropping it would turn them unready.
const legacyTable = "schema_migrations"

// queryer is what reading the bookkeeping needs: a pool or a connection.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaState is what the bookkeeping says about the schema.
type schemaState struct {
	// version is the last migration applied, 0 for none.
	version int
	// dirty says the migration to version failed or was cut off part-way,
	// or is running now.
	dirty bool
	// legacy says version comes from legacyTable: golang-migrate has not
	// recorded anything yet, and the next Migrate takes it over.
	legacy bool
}

// holds reports that the schema has every migration up to latest cleanly
// applied. Migrations apply in order, so a schema past latest holds them
// all even while the step past it is dirty: a newer release migrating.
func (s schemaState) holds(latest int) bool {
	return s.version > latest || s.version == latest && !s.dirty
}

// readSchemaState reads the version golang-migrate recorded or, when it has
// recorded none, the one a release before it left in legacyTable.
func readSchemaState(ctx context.Context, q queryer) (schemaState, error) {
	v, dirty, ok, err := readVersionRow(ctx, q)
	if err != nil {
		return schemaState{}, err
	}
	if ok {
		return schemaState{version: max(v, 0), dirty: dirty}, nil
	}
	n, err := legacyVersion(ctx, q)
	return schemaState{version: n, legacy: n > 0}, err
}

// readVersionRow reads golang-migrate's row as the library stores it: the
// version is -1 (database.NilVersion) after a failed undo of migration 1.
// ok is false when there is no row, or no table yet.
func readVersionRow(ctx context.Context, q queryer) (version int, dirty, ok bool, err error) {
	var v int64
	err = q.QueryRowContext(ctx, "SELECT version, dirty FROM "+versionTable+" LIMIT 1").Scan(&v, &dirty)
	switch {
	case err == nil:
		return int(v), dirty, true, nil
	case errors.Is(err, sql.ErrNoRows), isMissingTable(err):
		return database.NilVersion, false, false, nil
	}
	return 0, false, false, unavailableOr(err)
}

// legacyVersion is the highest version in legacyTable, 0 when there is no
// such table. A table of that name without applied_at is not one this
// service wrote, and reading it fails rather than guessing.
func legacyVersion(ctx context.Context, q queryer) (int, error) {
	var v sql.NullInt64
	err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM "+legacyTable+" WHERE applied_at IS NOT NULL").Scan(&v)
	if err != nil {
		if isMissingTable(err) {
			return 0, nil
		}
		return 0, unavailableOr(err)
	}
	return int(v.Int64), nil
}

// bookkeeper is golang-migrate's database driver with two changes. It reads
// the version with readVersionRow, which reports errors: the library's
// SQLite driver takes any failed read for "no version yet", after which Up
// would run every migration again on a full schema. And it notes the
// migrations this process runs, so that a failure can be told apart from a
// dirty state left by someone else, and callers can say what was applied.
//
// The library's driver interface takes no context; ctx is the attempt's.
type bookkeeper struct {
	database.Driver
	ctx  context.Context
	pool *sql.DB
	// dialect is the database's, for the steps of beforeMigration.
	dialect *dialect
	// undoing is set for a down command, whose dirty marks name the
	// version a migration is undone to, not one being applied.
	undoing bool

	// running is set while the migration to target is under way: between
	// the dirty mark and the clean one.
	running bool
	target  int
	// reached lists the versions each finished migration left, in order.
	reached []int
}

// Version implements database.Driver.
func (b *bookkeeper) Version() (int, bool, error) {
	v, dirty, _, err := readVersionRow(b.ctx, b.pool)
	return v, dirty, err
}

// SetVersion implements database.Driver. golang-migrate marks the target
// version dirty before running a migration and clean after it; a clean mark
// without a dirty one before it is a forced version, not a migration.
//
// The work of beforeMigration for a version runs before its dirty mark, so
// that a failure there (a lost connection) leaves the schema clean and the
// attempt is retried; each such step may run more than once.
func (b *bookkeeper) SetVersion(version int, dirty bool) error {
	if step := beforeMigration[version]; step != nil && dirty && !b.undoing {
		if err := step(b.ctx, b.dialect, b.pool); err != nil {
			return err
		}
	}
	if err := b.Driver.SetVersion(version, dirty); err != nil {
		return err
	}
	switch {
	case dirty:
		b.running, b.target = true, version
	case b.running:
		b.running = false
		b.reached = append(b.reached, version)
	}
	return nil
}

// isMissingTable reports a query on a table that does not exist.
func isMissingTable(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1146 // ER_NO_SUCH_TABLE
	}
	return strings.Contains(err.Error(), "no such table")
}
