package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
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
