package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/server"
)

// TestServer_Shutdown drains against a slow database: requests outlast the
// drain budget, Shutdown cancels them and returns only once they have
// returned, and the store is closed right after, as the binary does. No
// request may see the closed store (reproduction 6 answered a committed
// order 500 that way), none is answered 500, and a retry of every key on
// a fresh server tells the truth: each order that exists was told to one
// key, and none was told that does not exist.
func TestServer_Shutdown(t *testing.T) {
	db, proxy, dsn := openProxiedStore(t, testenv.Faults{MySQL: true}, 20*time.Second)
	ts := startServer(t, db, server.Config{})
	ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":1000}`).want(t, 201)
	proxy.SetFaults(testenv.Faults{MySQL: true, Latency: 60 * time.Millisecond})

	const n = 16
	type answer struct {
		status int
		body   string
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", ts.URL+"/orders", strings.NewReader(`{"product_id":1,"quantity":1}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("drain-%d", i))
			res, err := client.Do(req)
			if err != nil {
				return // not accepted before the listener closed: status 0
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body) // a cut body shows in the checks below
			checkResponse(t, req, res, b)
			answers[i] = answer{res.StatusCode, string(b)}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the orders are in their transactions now
	const budget = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	err := ts.Srv.Shutdown(ctx)
	took := time.Since(start)
	db.Close() // what the binary does next
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	// The budget, then the grace a cancelled request has to learn its
	// COMMIT's outcome, then slack for a busy machine.
	if took > budget+3*time.Second {
		t.Errorf("Shutdown took %v with a %v budget", took, budget)
	}
	wg.Wait()
	statuses := map[int]int{}
	for _, a := range answers {
		statuses[a.status]++
		if a.status != 0 && a.status != 201 && a.status != 503 {
			t.Errorf("answer %d during shutdown: %s", a.status, a.body)
		}
	}
	t.Logf("Shutdown took %v; answers %v (0: no answer)", took.Round(time.Millisecond), statuses)

	// Every key again, on a fresh server over the same database.
	fresh := startServer(t, openStore(t, "mysql", dsn), server.Config{})
	told := map[int64]bool{}
	for i, a := range answers {
		r := fresh.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "Idempotency-Key", fmt.Sprintf("drain-%d", i)).want(t, 201)
		id := r.orderID(t)
		if a.status == 201 && string(r.Body) != a.body {
			t.Errorf("key %d was told %s during shutdown, and %s now", i, a.body, r.Body)
		}
		if told[id] {
			t.Errorf("order %d told to two keys", id)
		}
		told[id] = true
	}
	if got := fresh.count(t, "orders"); got != n {
		t.Errorf("%d orders exist for %d keys", got, n)
	}
}

// TestServer_ShutdownReturnsAfterResponsesAreWritten holds an order's
// COMMIT past the drain budget, so that its handler answers 201 only after
// Shutdown has cancelled the requests, and slows the socket write of that
// answer as a busy machine can delay a goroutine. The binary closes its
// stores and exits as soon as Shutdown returns, and exiting closes every
// connection: Shutdown must not return before the answers its handlers
// produced are written. It used to return once the handlers had returned,
// while fasthttp was still writing their responses, so a committed order's
// 201 could die with the process and its client, without a key, never
// learn of an order that exists.
func TestServer_ShutdownReturnsAfterResponsesAreWritten(t *testing.T) {
	db, proxy, _ := openProxiedStore(t, testenv.Faults{MySQL: true}, 20*time.Second)
	srv := newServer(t, server.Config{Products: db, Orders: db, AccessLog: "off"})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &slowListener{Listener: inner}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	url := "http://" + inner.Addr().String()
	ts := &testServer{URL: url, DB: db, Srv: srv}
	ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":10}`).want(t, 201)

	proxy.HoldNextCommit(600 * time.Millisecond)
	ln.slow.Store(true)
	type answer struct {
		status int
		body   []byte
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		res, err := c.Post(url+"/orders", "application/json", strings.NewReader(`{"product_id":1,"quantity":1}`))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		answered <- answer{status: res.StatusCode, body: b, err: err}
	}()
	waitUntil(t, "the order's COMMIT to be held", func() bool {
		for _, e := range proxy.Events() {
			if strings.Contains(e, "COMMIT held back") {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	ln.closeAll() // what the process's exit does to its connections
	a := <-answered
	var n int
	if err := db.SQL().QueryRow("SELECT COUNT(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d orders; the held COMMIT should have gone through in the grace period", n)
	}
	if a.err != nil || a.status != 201 {
		t.Fatalf("the committed order's answer was lost at exit: status %d, %v, %s", a.status, a.err, a.body)
	}
}

// slowListener hands out connections whose writes can be slowed down, and
// closes them all at once as a process exit would.
type slowListener struct {
	net.Listener
	slow  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func (l *slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return &slowConn{Conn: c, l: l}, nil
}

func (l *slowListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

type slowConn struct {
	net.Conn
	l *slowListener
}

func (c *slowConn) Write(b []byte) (int, error) {
	if c.l.slow.Load() {
		time.Sleep(300 * time.Millisecond)
	}
	return c.Conn.Write(b)
}

// waitUntil polls cond until it holds, failing the test after ten seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
