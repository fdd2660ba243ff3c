package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/storage"
)

// TestAPI_DatabaseOutage takes MariaDB away behind a proxy: liveness keeps
// answering, readiness and database routes answer 503 with Retry-After
// within the query timeout, and everything recovers by itself.
func TestAPI_DatabaseOutage(t *testing.T) {
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, cfg.Addr)
	cfg.Addr = proxy.Addr()
	db, err := storage.Open(t.Context(), storage.Config{MySQLDSN: cfg.FormatDSN(), QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := startServer(t, db, server.Config{})
	ts.do(t, "POST", "/products", `{"name":"a","price":1}`).want(t, 201)
	ts.do(t, "GET", "/readyz", "").want(t, 200)

	for _, mode := range []struct {
		name string
		down func()
	}{{"Refused", proxy.Down}, {"Hung", proxy.Blackhole}} {
		t.Run(mode.name, func(t *testing.T) {
			mode.down()
			ts.do(t, "GET", "/healthz", "").want(t, 200)
			// Readiness results live a second (a probe flood must not
			// multiply pings); the outage shows within that.
			waitReadyz(t, ts, 503)
			for _, req := range [][3]string{
				{"GET", "/readyz", ""},
				{"GET", "/products/1", ""},
				{"POST", "/orders", `{"product_id":1,"quantity":1}`},
			} {
				start := time.Now()
				r := ts.do(t, req[0], req[1], req[2])
				if took := time.Since(start); took > 4*time.Second {
					t.Errorf("%s %s took %v with the database %s", req[0], req[1], took, strings.ToLower(mode.name))
				}
				if r.Status != 503 || r.Header.Get("Retry-After") == "" {
					t.Fatalf("%s %s: status %d, Retry-After %q; body %s", req[0], req[1], r.Status, r.Header.Get("Retry-After"), r.Body)
				}
			}
			proxy.Up()
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := ts.do(t, "GET", "/products/1", "")
				if r.Status == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not recovered: %d %s", r.Status, r.Body)
				}
				time.Sleep(100 * time.Millisecond)
			}
			waitReadyz(t, ts, 200)
		})
	}
}

// waitReadyz polls /readyz until it answers status, for up to 10s.
func waitReadyz(t *testing.T, ts *testServer, status int) *response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := ts.do(t, "GET", "/readyz", "")
		if r.Status == status {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz answers %d %s, want %d", r.Status, r.Body, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
