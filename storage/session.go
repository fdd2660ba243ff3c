package storage

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// A service whose host freezes, or whose network drops packets without a
// reset, leaves its transaction open on the server with nobody to finish
// it. The server keeps the session, and the row locks of the transaction
// (a product, an idempotency record), until TCP keepalive ends it: about
// two hours with Linux's defaults. Meanwhile every order for the product
// and every retry of the key waits and fails. The serving pool's sessions
// are therefore told to end a transaction left idle for longer than any
// request of this process can still be using it.
//
// MariaDB (10.3 and later) has idle_transaction_timeout, which ends only
// sessions idle inside a transaction. MySQL has no such variable (naming it
// fails the connection), so there wait_timeout does the job: it ends any
// session idle that long, in a transaction or not, which means the pool
// must retire idle connections before the server does.

// Session variables that end a session left idle.
const (
	idleTransactionTimeout = "idle_transaction_timeout"
	waitTimeout            = "wait_timeout"
)

// errUnknownVariable is MySQL's ER_UNKNOWN_SYSTEM_VARIABLE.
const errUnknownVariable = 1193

// idleSessionLimit is how long, in whole seconds, a session of the serving
// pool may sit idle inside a transaction before the server ends it. A
// request gives up on its transaction at the query timeout, or at most
// resolveGrace after it while it waits for a COMMIT's answer; its last
// statement ran after the request began, so a session idle for that long
// belongs to a request that has already answered. A shorter limit could
// roll back a COMMIT still on its way from a live request; a longer one
// only keeps a vanished client's locks longer.
func idleSessionLimit(queryTimeout time.Duration) int {
	limit := queryTimeout + resolveGrace
	return int((limit + time.Second - 1) / time.Second)
}

// endsIdleTransactions reports whether the server at dsn has
// idle_transaction_timeout, by asking for it: a server without it says it
// does not know the variable. Asking is sturdier than reading the version
// string, which proxies rewrite and forks word differently.
func endsIdleTransactions(ctx context.Context, dsn string) (bool, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return false, err
	}
	defer db.Close()
	var v sql.NullInt64
	err = db.QueryRowContext(ctx, "SELECT @@idle_transaction_timeout").Scan(&v)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == errUnknownVariable {
		return false, nil
	}
	return err == nil, err
}

// sessionSettings is how the serving pool bounds a vanished client's
// transaction on one server.
type sessionSettings struct {
	// dsn sets the session variable at every connect (go-sql-driver sends
	// the DSN's parameters as one SET after the handshake).
	dsn string
	// maxIdleTime is how long the pool keeps an unused connection; zero
	// leaves the pool's default.
	maxIdleTime time.Duration
}

// boundIdleSessions adds the session limit to dsn, on MariaDB as
// idle_transaction_timeout, elsewhere as wait_timeout. A variable the DSN
// sets already is left as the operator set it.
//
// When the DSN ends up with a wait_timeout, ours or the operator's, the
// pool closes idle connections itself before the server would:
// database/sql's cleaner checks at least a second apart, so a connection
// lives up to a second past maxIdleTime, which is therefore half of what
// is left of wait_timeout after that second (never more than the pool's
// default). A connection the server ends anyway (a process paused past
// it, as Lambda's are between invocations) is found dead when next taken
// from the pool, by go-sql-driver's liveness check, and replaced before
// any statement is sent on it.
func boundIdleSessions(dsn string, native bool, limit int) (sessionSettings, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return sessionSettings{}, err
	}
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	variable := idleTransactionTimeout
	if !native {
		variable = waitTimeout
	}
	if _, set := c.Params[variable]; !set {
		c.Params[variable] = strconv.Itoa(limit)
	}
	s := sessionSettings{dsn: c.FormatDSN()}
	if wait, err := strconv.Atoi(c.Params[waitTimeout]); err == nil && wait > 1 {
		s.maxIdleTime = min(defaultMaxIdleTime, (time.Duration(wait)*time.Second-time.Second)/2)
	}
	return s, nil
}

// innodbLockWaitTimeout is the session variable that bounds, in whole
// seconds, how long a statement waits for a row lock on the server.
const innodbLockWaitTimeout = "innodb_lock_wait_timeout"

// boundLockWaits adds to dsn a lock wait no longer than timeout (rounded up
// to whole seconds), unless the DSN sets one. When a statement's context
// ends, go-sql-driver closes its connection, but the server does not see
// that while the statement waits for a lock: with the server's default of
// 50 s, the abandoned transaction would keep every row it locked (a
// batch's products) for that long, and every order for them would wait.
func boundLockWaits(dsn string, timeout time.Duration) (string, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", err
	}
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	if _, set := c.Params[innodbLockWaitTimeout]; !set {
		c.Params[innodbLockWaitTimeout] = strconv.FormatInt(max(1, int64((timeout+time.Second-1)/time.Second)), 10)
	}
	return c.FormatDSN(), nil
}
