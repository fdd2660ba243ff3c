package storage

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
)

// asMySQL answers the server question as MySQL would: no
// idle_transaction_timeout. MariaDB also has wait_timeout, with MySQL's
// meaning, so MySQL's path runs on MariaDB too.
func asMySQL(context.Context, string) (bool, error) { return false, nil }

func mysqlOnly(t *testing.T) {
	t.Helper()
	if !slices.Contains(testenv.Backends(), "mysql") {
		t.Skip("MySQL only: SQLite has no sessions")
	}
}

func openWith(t *testing.T, cfg Config, native func(context.Context, string) (bool, error)) *DB {
	t.Helper()
	d, err := open(context.Background(), cfg, native)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestIdleSessionLimit(t *testing.T) {
	for _, c := range []struct {
		timeout time.Duration
		want    int
	}{{5 * time.Second, 6}, {500 * time.Millisecond, 2}, {time.Second, 2}, {1100 * time.Millisecond, 3}, {20 * time.Second, 21}} {
		if got := idleSessionLimit(c.timeout); got != c.want {
			t.Errorf("idleSessionLimit(%v) = %d, want %d", c.timeout, got, c.want)
		}
	}
}

// TestBoundIdleSessions covers the settings of each server, and DSNs that
// set the variables themselves.
func TestBoundIdleSessions(t *testing.T) {
	for _, c := range []struct {
		dsn         string
		native      bool
		params      map[string]string
		maxIdleTime time.Duration
	}{
		{"u@tcp(h:3306)/db", true, map[string]string{idleTransactionTimeout: "6"}, 0},
		{"u@tcp(h:3306)/db", false, map[string]string{waitTimeout: "6"}, 2500 * time.Millisecond},
		{"u@tcp(h:3306)/db?wait_timeout=7", false, map[string]string{waitTimeout: "7"}, 3 * time.Second},
		{"u@tcp(h:3306)/db?wait_timeout=28800", false, map[string]string{waitTimeout: "28800"}, defaultMaxIdleTime},
		{"u@tcp(h:3306)/db?wait_timeout=60", true, map[string]string{idleTransactionTimeout: "6", waitTimeout: "60"}, 29500 * time.Millisecond},
		{"u@tcp(h:3306)/db?idle_transaction_timeout=30", true, map[string]string{idleTransactionTimeout: "30"}, 0},
	} {
		s, err := boundIdleSessions(c.dsn, c.native, 6)
		if err != nil {
			t.Fatal(err)
		}
		got, err := mysql.ParseDSN(s.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got.Params, c.params) || s.maxIdleTime != c.maxIdleTime {
			t.Errorf("%s, native=%v: %v and idle time %v; want %v and %v", c.dsn, c.native, got.Params, s.maxIdleTime, c.params, c.maxIdleTime)
		}
	}
}

// TestOpen_SessionLimit reads the serving pool's session variables: the
// limit goes into idle_transaction_timeout where the server has it, and
// into wait_timeout where it does not (the pool then retires idle
// connections before the server would); a variable the DSN sets is left
// alone; the migration pool's DSN gets neither.
func TestOpen_SessionLimit(t *testing.T) {
	mysqlOnly(t)
	ctx := context.Background()
	base := testenv.MySQLDSN(t)
	probe, err := endsIdleTransactions(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	variables := func(d *DB) (idleTx, wait int64) {
		t.Helper()
		q := "SELECT @@session.wait_timeout"
		if probe {
			q = "SELECT @@session.idle_transaction_timeout, @@session.wait_timeout"
		}
		row := d.db.QueryRowContext(ctx, q)
		var err error
		if probe {
			err = row.Scan(&idleTx, &wait)
		} else {
			err = row.Scan(&wait)
		}
		if err != nil {
			t.Fatal(err)
		}
		return idleTx, wait
	}
	cfg := Config{MySQLDSN: base, QueryTimeout: 500 * time.Millisecond}
	d := openWith(t, cfg, endsIdleTransactions)
	var serverWait int64
	if err := d.db.QueryRowContext(ctx, "SELECT @@global.wait_timeout").Scan(&serverWait); err != nil {
		t.Fatal(err)
	}
	idleTx, wait := variables(d)
	if probe && (idleTx != 2 || wait != serverWait) {
		t.Errorf("MariaDB: idle_transaction_timeout %d, wait_timeout %d; want 2 and the server's %d", idleTx, wait, serverWait)
	}
	if !probe && wait != 2 {
		t.Errorf("MySQL: wait_timeout %d, want 2", wait)
	}

	d = openWith(t, cfg, asMySQL)
	if _, wait := variables(d); wait != 2 {
		t.Errorf("MySQL's path: wait_timeout %d, want 2", wait)
	}

	c, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	c.Params = map[string]string{waitTimeout: "7"}
	d = openWith(t, Config{MySQLDSN: c.FormatDSN(), QueryTimeout: 500 * time.Millisecond}, asMySQL)
	if _, wait := variables(d); wait != 7 {
		t.Errorf("wait_timeout set in the DSN: %d, want it kept at 7", wait)
	}

	tgt, err := resolve(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mysql.ParseDSN(tgt.dsn)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{idleTransactionTimeout, waitTimeout} {
		if _, set := mc.Params[v]; set {
			t.Errorf("the migration pool's DSN sets %s: a migration's lock session may sit idle for longer", v)
		}
	}
}

// TestOpen_WaitTimeoutKeepsThePoolWorking takes MySQL's path, where the
// server ends every session idle past the limit (2 s for a 500 ms query
// timeout), pooled ones included. The pool retires idle connections
// before that; and a connection the server ended anyway (here the pool's
// idle retirement is turned off, as when a process is paused past the
// limit) is replaced when next used, without an error reaching a caller.
func TestOpen_WaitTimeoutKeepsThePoolWorking(t *testing.T) {
	mysqlOnly(t)
	ctx := context.Background()
	cfg := Config{MySQLDSN: testenv.MySQLDSN(t), QueryTimeout: 500 * time.Millisecond, MaxOpenConns: 1}
	connID := func(d *DB) int64 {
		t.Helper()
		var id int64
		if err := d.db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
			t.Fatalf("a query on a pool idle past the server's limit: %v", err)
		}
		return id
	}

	t.Run("RetiredByThePool", func(t *testing.T) {
		t.Parallel()
		d := openWith(t, cfg, asMySQL)
		connID(d)
		time.Sleep(2500 * time.Millisecond)
		if n := d.db.Stats().MaxIdleTimeClosed; n == 0 {
			t.Fatal("the pool kept a connection idle past the server's limit")
		}
		connID(d)
	})
	t.Run("EndedByTheServer", func(t *testing.T) {
		t.Parallel()
		d := openWith(t, cfg, asMySQL)
		d.db.SetConnMaxIdleTime(0)
		before := connID(d)
		time.Sleep(2500 * time.Millisecond)
		if after := connID(d); after == before {
			t.Fatalf("connection %d outlived the server's wait_timeout", before)
		}
		if n := d.db.Stats().MaxIdleTimeClosed; n != 0 {
			t.Fatalf("the pool retired %d connections; the server was to end this one", n)
		}
	})
}

// TestOrderStore_VanishedClientOnMySQLsPath is the vanished client's
// scenario (TestOrderStore_PlaceOrders_VanishedClientDoesNotHoldTheKey) on
// MySQL's path: wait_timeout ends the session whose COMMIT never arrives,
// and a retry of the key places the order within seconds.
func TestOrderStore_VanishedClientOnMySQLsPath(t *testing.T) {
	mysqlOnly(t)
	c, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, c.Addr, testenv.Faults{MySQL: true})
	c.Addr = proxy.Addr()
	d := openWith(t, Config{MySQLDSN: c.FormatDSN(), QueryTimeout: 500 * time.Millisecond, MaxOpenConns: 4}, asMySQL)
	ctx := context.Background()
	p, err := d.CreateProduct(ctx, apiperf.ProductInput{Name: "p", Price: 100, Stock: 10})
	if err != nil {
		t.Fatal(err)
	}
	placement := func() *apiperf.OrderPlacement {
		return &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: p.ID, Quantity: 1},
			Key: &apiperf.IdempotencyKey{Key: "limbo"},
			Respond: func(o *apiperf.Order, err error) apiperf.StoredResponse {
				return apiperf.StoredResponse{Status: 201, Body: []byte("{}")}
			}}
	}
	proxy.HoldNextCommit(15 * time.Second)
	first := placement()
	d.PlaceOrders(ctx, []*apiperf.OrderPlacement{first})
	if apiperf.ErrorCode(first.Err) != apiperf.EUNAVAILABLE {
		t.Fatalf("the order whose COMMIT never arrives: %v, want unavailable", first.Err)
	}
	start := time.Now()
	var last error
	for time.Since(start) < 5*time.Second {
		retry := placement()
		d.PlaceOrders(ctx, []*apiperf.OrderPlacement{retry})
		if retry.Err == nil {
			if retry.Order == nil || retry.Replayed {
				t.Fatalf("the retry: %+v; want a new order, the first was rolled back", retry)
			}
			return
		}
		last = retry.Err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the key is still undecided 5 s after its request ended: %v", last)
}
