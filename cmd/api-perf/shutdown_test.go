package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/api-perf/api-perf/internal/testenv"
)

// TestShutdown_SIGTERMUnderLoad is reproduction 6 of issue 10 on the real
// binary: orders run against a slow MariaDB, so they outlast
// SHUTDOWN_TIMEOUT=1s when SIGTERM arrives. The process must exit within
// the budget plus its bounded grace, no request may be answered 500 (the
// old drain closed Redis and the statements under running handlers), and
// after a restart on the same database every key gets the truth: each
// order that exists was told to exactly one key.
func TestShutdown_SIGTERMUnderLoad(t *testing.T) {
	dsn := testenv.MySQLDSN(t)
	dbcfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, dbcfg.Addr, testenv.Faults{MySQL: true})
	proxied := *dbcfg
	proxied.Addr = proxy.Addr()
	srv := newProcess(t, map[string]string{
		"MYSQL_DSN":        proxied.FormatDSN(),
		"REDIS_URL":        "redis://" + testenv.RedisAddr(),
		"REDIS_KEY_PREFIX": testenv.UniqueName("drain-") + ":",
		"RATE_LIMIT_READ":  "off",
		"RATE_LIMIT_WRITE": "off",
		"SHUTDOWN_TIMEOUT": "1s",
		"DB_QUERY_TIMEOUT": "20s",
		"LOG_LEVEL":        "warn",
		"LOG_FORMAT":       "text",
	})
	srv.start()
	base := "http://" + srv.addr
	const products = 4
	for range products {
		res, err := http.Post(base+"/products", "application/json", strings.NewReader(`{"name":"A","price":1,"stock":100000}`))
		if err != nil || res.StatusCode != 201 {
			t.Fatalf("create product: %v %v", res, err)
		}
		res.Body.Close()
	}
	proxy.SetFaults(testenv.Faults{MySQL: true, Latency: 150 * time.Millisecond})

	type answer struct {
		key, order string
		status     int
		body       string
	}
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for c := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("drain-%d-%d", c, i)
				order := fmt.Sprintf(`{"product_id":%d,"quantity":1}`, 1+c%products)
				status, _, body := post(client, base+"/orders", order, key)
				mu.Lock()
				answers = append(answers, answer{key, order, status, string(body)})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop) // each client's request in flight is its last
	took, exitErr := srv.stop(syscall.SIGTERM, 30*time.Second)
	wg.Wait()
	if exitErr != nil {
		t.Errorf("exit after SIGTERM: %v", exitErr)
	}
	statuses := map[int]int{}
	for _, a := range answers {
		statuses[a.status]++
	}
	t.Logf("exit %v after SIGTERM with SHUTDOWN_TIMEOUT=1s; answers %v (0: no answer)", took.Round(time.Millisecond), statuses)
	// 1s of budget, at most 2s for cancelled requests to return, and
	// slack for a shared machine.
	if took > 6*time.Second {
		t.Errorf("exit took %v after SIGTERM with a 1s budget", took)
	}
	for _, a := range answers {
		if a.status != 0 && a.status != 201 && a.status != 503 {
			t.Errorf("key %s answered %d during shutdown: %s", a.key, a.status, a.body)
		}
	}
	if strings.Contains(srv.logs.String(), "is closed") {
		t.Errorf("a request met a closed dependency:\n%s", srv.logs.String())
	}

	proxy.SetFaults(testenv.Faults{MySQL: true})
	srv.start()
	told := map[int64]string{}
	for _, a := range answers {
		status, _, body := post(client, base+"/orders", a.order, a.key)
		if status != 201 {
			t.Fatalf("key %s after the restart: %d %s", a.key, status, body)
		}
		if a.status == 201 && string(body) != a.body {
			t.Errorf("key %s was told %s, and %s after the restart", a.key, a.body, body)
		}
		var id int64
		fmt.Sscanf(string(body), `{"id":%d`, &id) //nolint:errcheck // a zero id fails below
		if other, dup := told[id]; dup || id == 0 {
			t.Errorf("order %d told to keys %s and %s", id, other, a.key)
		}
		told[id] = a.key
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var orders int
	if err := db.QueryRow("SELECT COUNT(*) FROM orders").Scan(&orders); err != nil {
		t.Fatal(err)
	}
	if orders != len(told) {
		t.Errorf("%d orders exist for %d keys", orders, len(told))
	}
}
