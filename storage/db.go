// Package storage keeps products, orders and idempotency records in MySQL
// (MariaDB, RDS) or, for the embedded default, in a SQLite file. Both share
// one set of statements where the dialects agree; each statement is prepared
// once at Open and reused. Driver errors come back as apiperf error codes.
package storage

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	apiperf "github.com/api-perf/api-perf"
)

// defaultMaxIdleTime is how long the serving pool keeps a connection
// nobody uses, unless the server ends idle sessions sooner.
const defaultMaxIdleTime = 5 * time.Minute

// Config says which database to open and how to size its pool.
type Config struct {
	// MySQLDSN is a go-sql-driver DSN. When empty, SQLite at DataDir is used.
	MySQLDSN string
	// DataDir holds the SQLite file of the embedded default.
	DataDir string
	// SQLiteSynchronous is SQLite's synchronous pragma, "full" (the
	// default when empty: a commit is on disk before it is acknowledged)
	// or "normal" (WAL's faster mode, which a power loss can roll back by
	// the last few commits).
	SQLiteSynchronous string
	// MaxOpenConns and MaxIdleConns size the pool; zero picks a default for the host.
	MaxOpenConns int
	MaxIdleConns int
	// QueryTimeout bounds every statement and transaction; zero means 5s.
	QueryTimeout time.Duration
	// SkipMigrations leaves the schema alone (the caller ran them already).
	SkipMigrations bool

	// ReadDSNs are replicas of MySQLDSN. List reads go to one of them
	// while it is within MaxReplicaLag; see replicas.go.
	ReadDSNs []string
	// MaxReplicaLag is how far behind a replica may be and still be read;
	// zero means 1s.
	MaxReplicaLag time.Duration
	// ReplicaTimeout bounds one read or check on a replica before the read
	// goes elsewhere; zero means 500ms.
	ReplicaTimeout time.Duration
	// Registerer receives the read metrics (apiperf_db_*); nil registers
	// nothing.
	Registerer prometheus.Registerer
	// Logger hears the replicas' changes of state; nil means slog.Default().
	Logger *slog.Logger
}

// DB is an open database with its prepared statements. It implements
// apiperf.ProductStore and apiperf.OrderStore (idempotency records are
// part of placing an order).
type DB struct {
	db      *sql.DB
	dialect *dialect
	timeout time.Duration
	stmts   statements
	// sized are the multi-row statements of order batches.
	sized sizedStatements
	// consecutiveIDs reports that one INSERT's rows get consecutive ids,
	// so a batch's orders can share one.
	consecutiveIDs bool
	// writers admits write transactions in arrival order: one at a time
	// on SQLite, up to the pool size on MySQL. database/sql hands a freed
	// connection to a random waiter, so under a burst some requests would
	// otherwise starve past their deadline while later ones get through.
	writers chan struct{}
	// latest is the last migration this build knows: Ping's bar.
	latest int
	// replicas route list reads; nil without Config.ReadDSNs.
	replicas *replicaSet
	metrics  *metrics
	// Path is the SQLite file in the embedded default, empty for MySQL.
	Path string
}

var (
	_ apiperf.ProductStore = (*DB)(nil)
	_ apiperf.OrderStore   = (*DB)(nil)
	_ apiperf.Pinger       = (*DB)(nil)
)

// Open connects, applies pending migrations under a database lock (see
// Migrate), and prepares every statement. On MySQL it first asks the
// server how to end transactions a vanished client leaves open (see
// idleSessionLimit), which costs one connection of its own.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	return open(ctx, cfg, endsIdleTransactions)
}

// open is Open with the question to the server as a parameter, so that
// tests can take MySQL's path on MariaDB.
func open(ctx context.Context, cfg Config, native func(ctx context.Context, dsn string) (bool, error)) (_ *DB, err error) {
	defer apiperf.Wrap(&err, "storage.Open")
	t, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.ReadDSNs) > 0 && t.dialect != mysqlDialect {
		return nil, &ConfigError{Field: "ReadDSNs", Err: errors.New("read replicas need a MySQL primary (the embedded SQLite database has none)")}
	}
	d := &DB{timeout: cfg.QueryTimeout, dialect: t.dialect, Path: t.path, latest: latest(t.dialect.migrations())}
	if d.timeout <= 0 {
		d.timeout = 5 * time.Second
	}
	// Only the serving pool gets the session limit: the migration pool
	// holds golang-migrate's lock on a session that sits idle while other
	// statements run, and must keep it for as long as a migration takes.
	session := sessionSettings{dsn: t.dsn}
	if t.dialect == mysqlDialect {
		var hasIdleTx bool
		err := retryUnavailable(ctx, func() (err error) {
			pctx, cancel := context.WithTimeout(ctx, d.timeout)
			defer cancel()
			hasIdleTx, err = native(pctx, t.dsn)
			return mapError(err)
		})
		if err != nil {
			return nil, err
		}
		if session, err = boundIdleSessions(t.dsn, hasIdleTx, idleSessionLimit(d.timeout)); err != nil {
			return nil, err
		}
		if session.dsn, err = boundLockWaits(session.dsn, d.timeout); err != nil {
			return nil, err
		}
	}
	if d.metrics, err = newMetrics(cfg.Registerer, len(cfg.ReadDSNs) > 0); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if len(cfg.ReadDSNs) > 0 {
		// A replica read must leave the primary time for the retry.
		if cfg.ReplicaTimeout <= 0 {
			cfg.ReplicaTimeout = defaultReplicaTimeout
		}
		cfg.ReplicaTimeout = min(cfg.ReplicaTimeout, d.timeout/2)
		if d.replicas, err = openReplicas(cfg, t.dsn, d.metrics); err != nil {
			return nil, err
		}
	}
	if d.db, err = sql.Open(t.dialect.name, session.dsn); err != nil {
		d.closeReplicas()
		return nil, err
	}
	maxOpen := cfg.MaxOpenConns
	if t.dialect == mysqlDialect {
		if maxOpen == 0 {
			maxOpen = 8 * runtime.GOMAXPROCS(0)
		}
		d.writers = make(chan struct{}, maxOpen)
	} else {
		// SQLite has one writer at a time and its busy handler backs off
		// by sleeping, so pooled writers racing for the lock starve each
		// other. Writers queue on a channel instead (FIFO, bounded by the
		// caller's deadline); readers run beside them in WAL mode.
		d.writers = make(chan struct{}, 1)
		if maxOpen == 0 {
			maxOpen = 4
		}
	}
	maxIdle := cfg.MaxIdleConns
	if maxIdle == 0 || maxIdle > maxOpen {
		maxIdle = maxOpen
	}
	d.db.SetMaxOpenConns(maxOpen)
	d.db.SetMaxIdleConns(maxIdle)
	d.db.SetConnMaxLifetime(30 * time.Minute)
	d.db.SetConnMaxIdleTime(cmp.Or(session.maxIdleTime, defaultMaxIdleTime))

	if !cfg.SkipMigrations {
		if err := d.migrate(ctx, t); err != nil {
			d.closeReplicas()
			d.db.Close()
			return nil, err
		}
	}
	err = d.prepare(ctx)
	if err == nil {
		err = d.sized.prepare(ctx, d.db, d.dialect)
	}
	if err == nil {
		err = retryUnavailable(ctx, func() (err error) {
			cctx, cancel := context.WithTimeout(ctx, d.timeout)
			defer cancel()
			d.consecutiveIDs, err = consecutiveIDs(cctx, d.db, d.dialect)
			return mapError(err)
		})
	}
	if err != nil {
		d.stmts.close()
		d.sized.close()
		d.closeReplicas()
		d.db.Close()
		return nil, err
	}
	if d.replicas != nil {
		// Replicas answer or not in the background: one that is down at
		// start-up costs its reads, never the start.
		d.replicas.size(maxOpen, maxIdle)
		d.replicas.start()
	}
	return d, nil
}

func (d *DB) closeReplicas() {
	if d.replicas != nil {
		d.replicas.close()
	}
}

// migrate applies the pending migrations, unless the schema already holds
// them all: then one query on the serving pool, whose connection prepare
// goes on to use, replaces setting golang-migrate up on connections of its
// own (most starts, and every Lambda cold start after the first).
func (d *DB) migrate(ctx context.Context, t target) error {
	var st schemaState
	err := retryUnavailable(ctx, func() (err error) {
		rctx, cancel := context.WithTimeout(ctx, d.timeout)
		defer cancel()
		st, err = readSchemaState(rctx, d.db)
		return mapError(err)
	})
	if err != nil {
		return err
	}
	if !st.legacy && st.holds(d.latest) {
		return nil
	}
	_, err = t.migrate(ctx, nil, (*migrator).up)
	return err
}

// ConfigError is a Config field Open cannot use. Its message names the
// field; a caller that took the value from a setting of its own can name
// that setting instead (errors.As, then Field and Err).
type ConfigError struct {
	Field string // the Config field, such as "ReadDSNs"
	Err   error
}

func (e *ConfigError) Error() string { return "Config." + e.Field + ": " + e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// target is the database a Config names, resolved once: its dialect, the
// DSN its driver opens, and for SQLite the file's path.
type target struct {
	dialect *dialect
	dsn     string
	path    string
}

// resolve checks cfg's DSN, or creates DataDir for the SQLite file.
func resolve(cfg Config) (target, error) {
	if cfg.MySQLDSN != "" {
		dsn, err := normalizeDSN("MySQLDSN", cfg.MySQLDSN)
		return target{dialect: mysqlDialect, dsn: dsn}, err
	}
	dir := cfg.DataDir
	if dir == "" {
		dir = "data"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return target{}, &ConfigError{Field: "DataDir", Err: fmt.Errorf("cannot create it: %w", err)}
	}
	path := filepath.Join(dir, "api-perf.db")
	return target{dialect: sqliteDialect, dsn: sqliteDSN(path, cfg.SQLiteSynchronous), path: path}, nil
}

// openAttempts bounds how often Open tries a step that failed because the
// database was unreachable: a connection cut while the schema is checked
// or a statement prepared should cost a retry, not a crash and a restart.
const openAttempts = 5

// retryUnavailable runs fn until it succeeds, fails with an error other
// than EUNAVAILABLE, or has failed openAttempts times, pausing 100 ms,
// 200 ms, 400 ms... in between.
func retryUnavailable(ctx context.Context, fn func() error) error {
	pause := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt == openAttempts || apiperf.ErrorCode(err) != apiperf.EUNAVAILABLE {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause *= 2
	}
}

// normalizeDSN parses dsn (the value of Config's field) and sets what the
// stores rely on: times parsed as UTC,
// the session clock in UTC, a bounded dial, and affected-row counts that
// count changed rows only (an idempotency upsert that finds its key taken
// must report 0, not 1). Reads and writes need no
// socket deadlines of their own: every call carries a context deadline,
// which the driver enforces by closing the connection, and per-read
// deadlines would cost timer updates on every packet.
func normalizeDSN(field, dsn string) (string, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", &ConfigError{Field: field, Err: err}
	}
	c.ParseTime = true
	c.Loc = time.UTC
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	c.Params["time_zone"] = "'+00:00'"
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Second
	}
	c.RejectReadOnly = true
	c.ClientFoundRows = false
	return c.FormatDSN(), nil
}

// sqliteDSN turns on WAL (readers never wait for the writer), foreign keys,
// a busy timeout, and immediate write transactions so two writers queue on
// the lock instead of failing when they both upgrade from read to write.
// synchronous is FULL unless the caller asks for NORMAL: in WAL mode NORMAL
// skips the sync at each commit, so a power loss can lose commits whose
// clients were already answered, which an orders API must not do by default.
// The path is escaped for the file: URI: a '?', '#' or '%' in it would
// otherwise start the query, start a fragment or be decoded.
func sqliteDSN(path, synchronous string) string {
	sync := "synchronous(FULL)"
	if strings.EqualFold(synchronous, "normal") {
		sync = "synchronous(NORMAL)"
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", sync} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	return "file:" + uriPath.Replace(path) + "?" + q.Encode()
}

// uriPath escapes what a file: URI's path cannot hold as itself.
var uriPath = strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")

// SQL exposes the pool, for tests and the database-stats metrics collector.
func (d *DB) SQL() *sql.DB { return d.db }

// Dialect names the database: "mysql" or "sqlite".
func (d *DB) Dialect() string { return d.dialect.name }

// Ping checks the database answers and holds every migration this build
// knows, cleanly applied. A schema ahead of this build is fine, even while
// a newer release's migration runs (dirty past this build's last one): a
// rolling update keeps the replicas of the previous release ready.
func (d *DB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	st, err := readSchemaState(ctx, d.db)
	if err != nil {
		return mapError(err)
	}
	switch {
	case st.holds(d.latest):
		return nil
	case st.dirty:
		return apiperf.Errorf(apiperf.EUNAVAILABLE, "schema dirty at version %d (want %d): a migration failed or is running", st.version, d.latest)
	}
	return apiperf.Errorf(apiperf.EUNAVAILABLE, "schema at version %d, want %d", st.version, d.latest)
}

// Close stops the replicas' checks and closes the statements and the pools.
func (d *DB) Close() error {
	d.closeReplicas()
	d.stmts.close()
	d.sized.close()
	return d.db.Close()
}

// mapError turns driver errors into apiperf codes: duplicates and foreign-key
// violations are conflicts; an unreachable, read-only or too slow database
// is unavailable. Anything else stays internal.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var ae *apiperf.Error
	if errors.As(err, &ae) {
		return err
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1062: // ER_DUP_ENTRY
			return &apiperf.Error{Code: apiperf.ECONFLICT, Message: "duplicate value", Err: err}
		case 1451, 1452: // foreign key: row referenced / parent missing
			return &apiperf.Error{Code: apiperf.ECONFLICT, Message: "the resource is referenced by other resources", Err: err}
		case 1205, 1213: // lock wait timeout, deadlock: the client may retry
			return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the database is busy, retry", Err: err}
		case 1290, 1792, 1836, 2002, 2003, 2006, 2013, 1040, 1053: // read-only, too many conns, server gone
			return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the database is unavailable", Err: err}
		}
		return &apiperf.Error{Code: apiperf.EINTERNAL, Err: err}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "UNIQUE constraint failed"):
		return &apiperf.Error{Code: apiperf.ECONFLICT, Message: "duplicate value", Err: err}
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		return &apiperf.Error{Code: apiperf.ECONFLICT, Message: "the resource is referenced by other resources", Err: err}
	case strings.Contains(msg, "database is locked"), strings.Contains(msg, "SQLITE_BUSY"):
		return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the database is busy, retry", Err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, sql.ErrConnDone) || isNetError(err) || isClosed(err) {
		return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the database is unavailable", Err: err}
	}
	// A transaction finished before its COMMIT was rolled back by
	// database/sql when its context ended between its last statement and
	// the COMMIT: the request ran out of time, as when a statement is cut
	// off by the same deadline. (The stores never commit or roll back a
	// transaction twice.)
	if errors.Is(err, context.Canceled) || errors.Is(err, sql.ErrTxDone) {
		return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "the request was cancelled", Err: err}
	}
	return &apiperf.Error{Code: apiperf.EINTERNAL, Err: err}
}

// isClosed reports an error from using the pool or a statement after Close.
// Close waits for running requests at shutdown, so this is a request that
// outlived the wait: it is told the service is unavailable, never that it
// hit an internal error. database/sql does not export these errors.
func isClosed(err error) bool {
	s := err.Error()
	return strings.Contains(s, "sql: database is closed") || strings.Contains(s, "sql: statement is closed")
}
