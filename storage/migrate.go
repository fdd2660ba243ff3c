package storage

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database"
	migratemysql "github.com/golang-migrate/migrate/v4/database/mysql"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	apiperf "github.com/api-perf/api-perf"
)

// migrationsFS holds each dialect's migrations as golang-migrate reads them:
// migrations/<dialect>/NNNN_name.up.sql and its NNNN_name.down.sql.
//
//go:embed migrations
var migrationsFS embed.FS

// migrationTimeout bounds one attempt at a migration command: the wait for
// the lock, and each migration's statements.
const migrationTimeout = 2 * time.Minute

// Migration is one step of the schema's history.
type Migration struct {
	Version int
	// Name is the file name's part after the version, e.g. "init".
	Name string
}

// String is how the migrate command lists a migration: "2 idempotency_records".
func (m Migration) String() string { return fmt.Sprintf("%d %s", m.Version, m.Name) }

// Migrated says what a migration command did.
type Migrated struct {
	// Adopted is the version taken over from the bookkeeping of a release
	// before golang-migrate, 0 when there was none to take over.
	Adopted int
	// Steps are the migrations applied (Migrate) or undone (MigrateDown),
	// in the order they ran.
	Steps []Migration
}

// MigrationStatus is where the schema stands against this build's migrations.
type MigrationStatus struct {
	// Dialect is "mysql" or "sqlite".
	Dialect string
	// Version is the last migration applied, 0 for none.
	Version int
	// Dirty says the migration to Version failed or was cut off part-way
	// (or is running right now in another process).
	Dirty bool
	// Legacy says Version was recorded by a release before golang-migrate;
	// the next Migrate (or start-up) takes it over.
	Legacy bool
	// Latest is the last migration this build knows.
	Latest int
	// Pending are this build's migrations after Version.
	Pending []Migration
}

// DirtyError says the schema is dirty: the migration to Version failed or
// was cut off part-way, so the schema may hold part of it. MySQL commits
// each DDL statement on its own; SQLite rolls the migration back. Nothing
// migrates until someone checks the schema, finishes or undoes that
// migration by hand, and forces the version it matches.
//
// It does not unwrap to Err: a migration cut off by a lost connection is
// not one to retry, as the retry would only find the schema dirty.
type DirtyError struct {
	// Version is the version recorded dirty: the one the step that
	// stopped was moving to (applying migration Version, or undoing
	// migration Version+1).
	Version int
	// Err is what stopped the migration, when this process ran it.
	Err error
}

// Error says where the schema is and, when known, what stopped it there.
func (e *DirtyError) Error() string {
	msg := fmt.Sprintf("the schema is dirty at version %d: a migration step to it failed or was cut off part-way, "+
		"or is running in another process", e.Version)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Migrate applies the pending migrations. Any number of processes may call
// it at once on one database: each migration runs once, under
// golang-migrate's lock on MySQL (GET_LOCK, held by one session and
// released if it dies) and under a lock file beside the database on SQLite.
// A database last migrated by a release before golang-migrate is first taken
// over at the version it recorded. A lost connection is retried; a
// migration that failed or was cut off part-way leaves the schema dirty,
// reported as a *DirtyError and never retried.
func Migrate(ctx context.Context, cfg Config) (_ Migrated, err error) {
	defer apiperf.Wrap(&err, "storage.Migrate")
	t, err := resolve(cfg)
	if err != nil {
		return Migrated{}, err
	}
	return t.migrate(ctx, nil, (*migrator).up)
}

// MigrateDown undoes the last n migrations, newest first. Down migrations
// drop what their up migration added; the data that cannot go back is named
// at the top of each file.
func MigrateDown(ctx context.Context, cfg Config, n int) (_ Migrated, err error) {
	defer apiperf.Wrap(&err, "storage.MigrateDown(%d)", n)
	t, err := resolve(cfg)
	if err != nil {
		return Migrated{}, err
	}
	return t.migrate(ctx, nil, func(mg *migrator) error { return mg.down(n) })
}

// ForceMigrationVersion records version as applied and clean without
// running anything: the way out of a dirty state once the schema was
// checked and repaired by hand to match that version. Forcing 0 also drops
// the bookkeeping of releases before golang-migrate, which would otherwise
// be taken over again.
func ForceMigrationVersion(ctx context.Context, cfg Config, version int) (err error) {
	defer apiperf.Wrap(&err, "storage.ForceMigrationVersion(%d)", version)
	t, err := resolve(cfg)
	if err != nil {
		return err
	}
	_, err = t.migrate(ctx, nil, func(mg *migrator) error { return mg.force(version) })
	return err
}

// ReadMigrationStatus reads where the schema stands without changing
// anything and without waiting for the migration lock, so it answers while
// another process migrates (which then shows as dirty).
func ReadMigrationStatus(ctx context.Context, cfg Config) (_ MigrationStatus, err error) {
	defer apiperf.Wrap(&err, "storage.ReadMigrationStatus")
	t, err := resolve(cfg)
	if err != nil {
		return MigrationStatus{}, err
	}
	db, err := sql.Open(t.dialect.name, t.dsn)
	if err != nil {
		return MigrationStatus{}, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := readSchemaState(ctx, db)
	if err != nil {
		return MigrationStatus{}, err
	}
	list := t.dialect.migrations()
	s := MigrationStatus{Dialect: t.dialect.name, Version: st.version, Dirty: st.dirty, Legacy: st.legacy,
		Latest: latest(list)}
	for _, m := range list {
		if m.Version > st.version {
			s.Pending = append(s.Pending, m)
		}
	}
	return s, nil
}

// migrations lists the dialect's embedded migrations in order.
func (d *dialect) migrations() []Migration {
	list, err := listMigrations(d.migrationFS())
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	return list
}

// migrationFS is the dialect's directory of embedded migrations.
func (d *dialect) migrationFS() fs.FS {
	sub, err := fs.Sub(migrationsFS, "migrations/"+d.name)
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	return sub
}

// listMigrations reads the up migrations in fsys, in version order, with
// golang-migrate's file-name rule so that both agree on what is there.
func listMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var list []Migration
	for _, e := range entries {
		m, err := source.DefaultParse(e.Name())
		if err != nil || m.Direction != source.Up {
			continue
		}
		list = append(list, Migration{Version: int(m.Version), Name: m.Identifier})
	}
	slices.SortFunc(list, func(a, b Migration) int { return a.Version - b.Version })
	return list, nil
}

// latest is the last version in list, 0 when it is empty.
func latest(list []Migration) int {
	if len(list) == 0 {
		return 0
	}
	return list[len(list)-1].Version
}

// migrate runs one migration command, retrying it while the database is
// unreachable (a connection lost at start-up should cost a retry, not a
// crash): each attempt opens a migrator of its own, on fresh connections.
// fsys replaces the embedded migrations in tests.
func (t target) migrate(ctx context.Context, fsys fs.FS, fn func(*migrator) error) (Migrated, error) {
	var res Migrated
	err := retryUnavailable(ctx, func() error {
		return t.withMigrator(ctx, fsys, func(mg *migrator) error {
			res.Adopted = max(res.Adopted, mg.adopted)
			err := fn(mg)
			res.Steps = append(res.Steps, mg.steps()...)
			return err
		})
	})
	return res, err
}

// withMigrator runs fn on a migrator, and starts over on a new one while
// the migration lock is held elsewhere: golang-migrate's MySQL driver gives
// up on GET_LOCK after 10 s, and a replica starting beside one that runs a
// long migration should keep waiting, until migrationTimeout.
func (t target) withMigrator(ctx context.Context, fsys fs.FS, fn func(*migrator) error) error {
	ctx, cancel := context.WithTimeout(ctx, migrationTimeout)
	defer cancel()
	for {
		mg, err := openMigrator(ctx, t, fsys)
		if err == nil {
			err = fn(mg)
			mg.close()
		}
		if !lockBusy(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "timed out waiting for the migration lock", Err: err}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lockBusy reports that golang-migrate could not take its lock in time.
func lockBusy(err error) bool {
	return errors.Is(err, database.ErrLocked) || errors.Is(err, migrate.ErrLocked) || errors.Is(err, migrate.ErrLockTimeout)
}

// migrator is golang-migrate set up on a database for one attempt: a pool
// of its own (MySQL needs multiStatements, which the serving pool must not
// have, as it lets one injected string run a second statement), the
// bookkeeping driver, and this dialect's migrations.
type migrator struct {
	t        target
	list     []Migration
	pool     *sql.DB
	drv      *bookkeeper
	m        *migrate.Migrate
	adopted  int
	undoing  bool
	unlockFS func()
}

// openMigrator sets golang-migrate up on t and takes over the version of a
// release before it, if there is one to take over.
func openMigrator(ctx context.Context, t target, fsys fs.FS) (_ *migrator, err error) {
	if fsys == nil {
		fsys = t.dialect.migrationFS()
	}
	mg := &migrator{t: t}
	defer func() {
		if err != nil {
			mg.close()
		}
	}()
	if mg.list, err = listMigrations(fsys); err != nil {
		return nil, err
	}
	dsn := t.dsn
	if t.dialect == mysqlDialect {
		c, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, err
		}
		// golang-migrate sends each file as one multi-statement query. The
		// socket deadlines keep a dead network from hanging start-up, as
		// the library's calls carry no context.
		c.MultiStatements = true
		c.ReadTimeout, c.WriteTimeout = migrationTimeout, migrationTimeout
		dsn = c.FormatDSN()
	} else {
		// The library's SQLite lock only excludes callers sharing one
		// driver value; the lock file excludes every process and pool.
		if mg.unlockFS, err = lockFile(ctx, t.path+".migrate-lock"); err != nil {
			return nil, err
		}
	}
	if mg.pool, err = sql.Open(t.dialect.name, dsn); err != nil {
		return nil, err
	}
	mg.pool.SetMaxOpenConns(2)

	var drv database.Driver
	if t.dialect == mysqlDialect {
		conn, err := mg.pool.Conn(ctx)
		if err != nil {
			return nil, mapError(err)
		}
		drv, err = migratemysql.WithConnection(ctx, conn, &migratemysql.Config{
			MigrationsTable: versionTable, StatementTimeout: migrationTimeout})
		if err != nil {
			conn.Close()
			return nil, migrateCause(err)
		}
	} else {
		drv, err = migratesqlite.WithInstance(mg.pool, &migratesqlite.Config{MigrationsTable: versionTable})
		if err != nil {
			return nil, migrateCause(err)
		}
	}
	mg.drv = &bookkeeper{Driver: drv, ctx: ctx, pool: mg.pool, dialect: t.dialect}
	src, err := iofs.New(fsys, ".")
	if err != nil {
		return nil, err
	}
	if mg.m, err = migrate.NewWithInstance("iofs", src, t.dialect.name, mg.drv); err != nil {
		return nil, err
	}
	if err := mg.adopt(ctx); err != nil {
		return nil, err
	}
	return mg, nil
}

// adopt takes over the version a release before golang-migrate recorded,
// when golang-migrate has recorded none: the migrations up to it are in
// place and must not run again. It decides under the migration lock, so of
// many replicas starting at once exactly one takes it over, and never once
// the library has a version, even one forced to 0 or migrated down to 0.
func (mg *migrator) adopt(ctx context.Context) error {
	if _, _, ok, err := readVersionRow(ctx, mg.pool); err != nil || ok {
		return err
	}
	if n, err := legacyVersion(ctx, mg.pool); err != nil || n == 0 {
		return err
	}
	if err := mg.drv.Lock(); err != nil {
		return err
	}
	err := func() error {
		_, _, ok, err := readVersionRow(ctx, mg.pool)
		if err != nil || ok {
			return err
		}
		n, err := legacyVersion(ctx, mg.pool)
		if err != nil || n == 0 {
			return err
		}
		if err := mg.drv.Driver.SetVersion(n, false); err != nil {
			return migrateCause(err)
		}
		mg.adopted = n
		return nil
	}()
	if uerr := mg.drv.Unlock(); err == nil && uerr != nil {
		err = migrateCause(uerr)
	}
	return err
}

func (mg *migrator) close() {
	if mg.drv != nil {
		mg.drv.Close() //nolint:errcheck // closing what this attempt opened
	}
	if mg.pool != nil {
		mg.pool.Close()
	}
	if mg.unlockFS != nil {
		mg.unlockFS()
	}
}

// up applies every pending migration. When ctx ends it stops before the
// next migration (never inside one) and reports why. A schema past this
// build's migrations (a newer release's) has nothing for it to do: left to
// golang-migrate, it would fail on a version it has no file for.
func (mg *migrator) up() error {
	v, dirty, err := mg.drv.Version()
	if err != nil {
		return err
	}
	if (schemaState{version: v, dirty: dirty}).holds(latest(mg.list)) {
		return nil
	}
	stop := mg.stopWhenDone()
	defer stop()
	err = mg.m.Up()
	if errors.Is(err, migrate.ErrNoChange) {
		err = nil
	}
	return mg.failure(err)
}

// down undoes the last n migrations.
func (mg *migrator) down(n int) error {
	v, dirty, err := mg.drv.Version()
	if err != nil {
		return err
	}
	if dirty {
		return &DirtyError{Version: max(v, 0)}
	}
	if n < 1 || n > max(v, 0) {
		return apiperf.Errorf(apiperf.EINVALID, "cannot undo %d migrations: the schema is at version %d", n, max(v, 0))
	}
	mg.undoing, mg.drv.undoing = true, true
	stop := mg.stopWhenDone()
	defer stop()
	return mg.failure(mg.m.Steps(-n))
}

// force records version as applied and clean.
func (mg *migrator) force(version int) error {
	if version < 0 || version > latest(mg.list) {
		return apiperf.Errorf(apiperf.EINVALID, "cannot force version %d: this build's migrations go from 1 to %d (0 is none)",
			version, latest(mg.list))
	}
	v := version
	if version == 0 {
		if _, err := mg.pool.ExecContext(mg.drv.ctx, "DROP TABLE IF EXISTS "+legacyTable); err != nil {
			return mapError(err)
		}
		v = database.NilVersion
	}
	return mg.failure(mg.m.Force(v))
}

// stopWhenDone asks golang-migrate to stop between migrations once the
// attempt's context ends; the returned func ends the watch.
func (mg *migrator) stopWhenDone() func() {
	done := make(chan struct{})
	go func() {
		select {
		case <-mg.drv.ctx.Done():
			mg.m.GracefulStop <- true
		case <-done:
		}
	}()
	return func() { close(done) }
}

// steps are the migrations this migrator applied, or undid.
func (mg *migrator) steps() []Migration {
	if mg.drv == nil {
		return nil
	}
	var out []Migration
	for _, v := range mg.drv.reached {
		// Applying a migration reaches its version; undoing one reaches
		// the version before it (-1 before the first).
		i := slices.IndexFunc(mg.list, func(m Migration) bool {
			if mg.undoing {
				return m.Version > v
			}
			return m.Version == v
		})
		if i < 0 {
			out = append(out, Migration{Version: v})
			continue
		}
		out = append(out, mg.list[i])
	}
	return out
}

// failure turns what golang-migrate returned into this package's errors: a
// dirty state as *DirtyError (the one found at the start, or the one left
// by a migration this process ran), a lost connection as EUNAVAILABLE, so
// that it is retried, and a stop at the end of ctx as EUNAVAILABLE too.
func (mg *migrator) failure(err error) error {
	if err == nil {
		if cerr := mg.drv.ctx.Err(); cerr != nil {
			return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "migrations stopped before they were done", Err: cerr}
		}
		return nil
	}
	var dirty migrate.ErrDirty
	if errors.As(err, &dirty) {
		return &DirtyError{Version: max(dirty.Version, 0)}
	}
	if lockBusy(err) {
		return err
	}
	cause := migrateCause(err)
	if mg.drv.running {
		return &DirtyError{Version: max(mg.drv.target, 0), Err: cause}
	}
	return cause
}

// migrateCause gives an error from golang-migrate an apiperf code. Its
// database.Error keeps the driver's error without unwrapping to it (and
// quotes the whole migration), so the driver's error is taken out and
// mapped: a lost connection must read as EUNAVAILABLE to be retried.
func migrateCause(err error) error {
	var what string
	var orig error
	var ve database.Error
	var pe *database.Error
	switch {
	case errors.As(err, &pe):
		what, orig = pe.Err, pe.OrigErr
	case errors.As(err, &ve):
		what, orig = ve.Err, ve.OrigErr
	default:
		return unavailableOr(err)
	}
	if orig == nil {
		return errors.New(strings.TrimSpace(what))
	}
	if what == "" {
		what = "migration statement failed"
	}
	return fmt.Errorf("%s: %w", what, unavailableOr(orig))
}

// unavailableOr maps err when it means the database is unreachable, and
// leaves any other error as it is: what failed in a migration is for an
// operator to read, not a code for a client.
func unavailableOr(err error) error {
	if mapped := mapError(err); apiperf.ErrorCode(mapped) == apiperf.EUNAVAILABLE {
		return mapped
	}
	return err
}
