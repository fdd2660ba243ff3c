package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/storage"
)

// testServer is a server on a loopback port over a real store.
type testServer struct {
	URL string
	DB  *storage.DB
	Srv *server.Server
}

func openStore(tb testing.TB, backend string, dsnOverride string) *storage.DB {
	tb.Helper()
	// Correctness tests fire bursts of hundreds of requests at a 2-core
	// machine under the race detector; a generous deadline keeps them
	// about correctness. TestAPI_DatabaseOutage tests the deadline itself.
	cfg := storage.Config{QueryTimeout: 20 * time.Second}
	switch backend {
	case "mysql":
		cfg.MySQLDSN = dsnOverride
		if cfg.MySQLDSN == "" {
			cfg.MySQLDSN = testenv.MySQLDSN(tb)
		}
		cfg.MaxOpenConns = 32
	case "sqlite":
		cfg.DataDir = tb.TempDir()
	}
	db, err := storage.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// newServer is server.New for a test, which fails on its error.
func newServer(tb testing.TB, cfg server.Config) *server.Server {
	tb.Helper()
	s, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// startServer serves cfg on 127.0.0.1 until the test ends. Stores cfg
// leaves unset are db itself, and db is the readiness check unless cfg
// names its own.
func startServer(tb testing.TB, db *storage.DB, cfg server.Config) *testServer {
	tb.Helper()
	if cfg.Products == nil {
		cfg.Products = db
	}
	if cfg.Orders == nil {
		cfg.Orders = db
	}
	if cfg.Ready == nil {
		cfg.Ready = []server.Check{{Name: "database", Pinger: db}}
	}
	cfg.AccessLog = "off"
	srv := newServer(tb, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) //nolint:errcheck
	})
	return &testServer{URL: "http://" + ln.Addr().String(), DB: db, Srv: srv}
}

func newTestServer(tb testing.TB, backend string) *testServer {
	tb.Helper()
	return startServer(tb, openStore(tb, backend, ""), server.Config{})
}

var client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

// do sends one request and checks the answer against the OpenAPI
// document. Header pairs follow the body; a body is sent as JSON unless a
// pair says otherwise, and a pair with an empty value removes the header.
func (ts *testServer) do(tb testing.TB, method, path, body string, header ...string) *response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	checkResponse(tb, req, res, b)
	return &response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// want checks the status and, for errors, that the body is problem+json.
func (r *response) want(tb testing.TB, status int) *response {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if status >= 400 {
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			tb.Fatalf("error content type %q; body %s", ct, r.Body)
		}
		var p server.Problem
		if err := json.Unmarshal(r.Body, &p); err != nil || p.Status != status || p.Title == "" || p.RequestID == "" {
			tb.Fatalf("bad problem body %s (%v)", r.Body, err)
		}
	}
	return r
}

func eachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range testenv.Backends() {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

func (ts *testServer) count(tb testing.TB, table string) int {
	tb.Helper()
	var n int
	if err := ts.DB.SQL().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}
