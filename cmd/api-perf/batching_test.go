package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"
)

// TestBatching_OversellAcrossProcesses runs the oversell against the real
// binary with order batching on (its default): one process, then three
// processes sharing one MariaDB database and Redis, each with its own order
// pipeline. 400 concurrent orders for a stock of 50 are exactly 50 × 201
// and 350 × 409, the stock ends at 0, and the processes did coalesce
// orders (their batch-size histograms counted fewer batches than orders).
func TestBatching_OversellAcrossProcesses(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dProcesses", n), func(t *testing.T) {
			dsn := testenv.MySQLDSN(t)
			prefix := testenv.UniqueName("batching-") + ":"
			var procs []*process
			for range n {
				p := newProcess(t, map[string]string{
					"MYSQL_DSN":         dsn,
					"REDIS_URL":         "redis://" + testenv.RedisAddr(),
					"REDIS_KEY_PREFIX":  prefix,
					"RATE_LIMIT_READ":   "off",
					"RATE_LIMIT_WRITE":  "off",
					"DB_MAX_OPEN_CONNS": "8",
					"ORDER_LANES":       "2",
					"LOG_LEVEL":         "warn",
				})
				p.start()
				procs = append(procs, p)
			}
			base := func(i int) string { return "http://" + procs[i%n].addr }
			res, err := http.Post(base(0)+"/products", "application/json", strings.NewReader(`{"name":"Hot","price":5,"stock":50}`))
			if err != nil || res.StatusCode != 201 {
				t.Fatalf("create product: %v %v", res, err)
			}
			res.Body.Close()
			// Every process caches the product's body before the sale.
			for i := range n {
				res, err := http.Get(base(i) + "/products/1")
				if err != nil || res.StatusCode != 200 {
					t.Fatalf("warm the cache: %v %v", res, err)
				}
				res.Body.Close()
			}

			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 400}}
			defer client.CloseIdleConnections()
			var mu sync.Mutex
			statuses := map[int]int{}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 400 {
				wg.Go(func() {
					<-start
					res, err := client.Post(base(i)+"/orders", "application/json", strings.NewReader(`{"product_id":1,"quantity":1}`))
					status := 0
					if err == nil {
						io.Copy(io.Discard, res.Body) //nolint:errcheck // only the status matters
						res.Body.Close()
						status = res.StatusCode
					}
					mu.Lock()
					statuses[status]++
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			if statuses[201] != 50 || statuses[409] != 350 {
				t.Fatalf("answers %v, want 50 × 201 and 350 × 409", statuses)
			}
			// Read on each process: its cached body must show the sale
			// (the pipelines invalidated it once per batch).
			for i := range n {
				res, err := http.Get(base(i) + "/products/1")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if !strings.Contains(string(body), `"stock":0`) {
					t.Fatalf("process %d shows %s", i, body)
				}
			}
			var batches, orders float64
			for i := range n {
				b, o := scrapeBatches(t, base(i))
				batches, orders = batches+b, orders+o
			}
			t.Logf("%v orders in %v batches over %d processes", orders, batches, n)
			if orders != 400 || batches >= 400 {
				t.Fatalf("%v orders in %v batches: want 400 in fewer batches", orders, batches)
			}
		})
	}
}

// scrapeBatches reads apiperf_order_batch_size's count and sum from a
// process's /metrics.
func scrapeBatches(t *testing.T, base string) (batches, orders float64) {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "apiperf_order_batch_size_count "); ok {
			fmt.Sscan(v, &batches) //nolint:errcheck // a missing value fails the caller's check
		}
		if v, ok := strings.CutPrefix(line, "apiperf_order_batch_size_sum "); ok {
			fmt.Sscan(v, &orders) //nolint:errcheck // as above
		}
	}
	return batches, orders
}

// TestLoadConfig_OrderLanes: ORDER_LANES defaults to a quarter of the pool
// on MySQL (at least one) and to one on SQLite's single writer; a value set
// is kept.
func TestLoadConfig_OrderLanes(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{"MYSQL_DSN": "u@tcp(h:3306)/d", "DB_MAX_OPEN_CONNS": "16"}, 4},
		{map[string]string{"MYSQL_DSN": "u@tcp(h:3306)/d", "DB_MAX_OPEN_CONNS": "2"}, 1},
		{map[string]string{"DB_MAX_OPEN_CONNS": "16"}, 1},
		{map[string]string{"MYSQL_DSN": "u@tcp(h:3306)/d", "ORDER_LANES": "7"}, 7},
	} {
		cfg, err := loadConfig(func(k string) string { return c.env[k] })
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OrderLanes != c.want || !cfg.OrderBatching {
			t.Errorf("%v: %d lanes (batching %v), want %d", c.env, cfg.OrderLanes, cfg.OrderBatching, c.want)
		}
	}
}
