package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/api-perf/api-perf/internal/testenv"
)

var stockField = regexp.MustCompile(`"stock":(\d+)`)

func stockIn(t *testing.T, body string) int64 {
	t.Helper()
	m := stockField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no stock in %s", body)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestBatchedOrders_CacheCoherence sends concurrent orders through replica
// A, whose pipeline batches them, while each client reads the product back
// from A after its 201: the stock A shows is never above what the 201s
// answered before the read allow (a batch drops the cached product before
// any of its orders is answered). Replica B, which shares Redis, shows the
// final stock once Redis's invalidation reaches it.
func TestBatchedOrders_CacheCoherence(t *testing.T) {
	vars := sharedBackends(t, "redis://"+testenv.RedisAddr())
	vars["ORDER_BATCHING"] = "on"
	a, b := startReplica(t, vars, nil), startReplica(t, vars, nil)
	const stock = 300
	if status, body := call(t, "POST", a+"/products", fmt.Sprintf(`{"name":"hot","price":1,"stock":%d}`, stock)); status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	call(t, "GET", a+"/products/1", "") // cached on both
	call(t, "GET", b+"/products/1", "")

	var answered atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				status, body := call(t, "POST", a+"/orders", `{"product_id":1,"quantity":1}`)
				switch status {
				case 201:
				case 409:
					return
				default:
					t.Errorf("order: %d %s", status, body)
					return
				}
				before := answered.Add(1)
				status, body = call(t, "GET", a+"/products/1", "")
				if status != 200 {
					t.Errorf("read back: %d %s", status, body)
					return
				}
				if s := stockIn(t, body); s > stock-before {
					t.Errorf("after %d orders were answered 201, A shows stock %d", before, s)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := answered.Load(); n != stock {
		t.Fatalf("%d orders created, want %d", n, stock)
	}
	for _, r := range []string{a, b} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, body := call(t, "GET", r+"/products/1", "")
			if stockIn(t, body) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves %s", r, body)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestBatchedOrders_OneKeyStorm sends, on the embedded default and on
// MariaDB, 40 concurrent requests with one Idempotency-Key (half with one
// body, half with another) to hot products, amid unkeyed orders that batch
// with them: exactly one order exists for the key, every request with the
// winning body is answered 201 naming it, every other is 422 (or 409 while
// the first is still running), and stock balances with the orders.
func TestBatchedOrders_OneKeyStorm(t *testing.T) {
	for name, vars := range map[string]func() map[string]string{
		"Embedded": func() map[string]string {
			return map[string]string{"DATA_DIR": t.TempDir(), "LOG_LEVEL": "error", "RATE_LIMIT_READ": "off", "RATE_LIMIT_WRITE": "off"}
		},
		"MariaDB": func() map[string]string { return sharedBackends(t, "redis://"+testenv.RedisAddr()) },
	} {
		t.Run(name, func(t *testing.T) {
			v := vars()
			v["ORDER_BATCHING"] = "on"
			a := startReplica(t, v, nil)
			for range 2 {
				if status, body := call(t, "POST", a+"/products", `{"name":"hot","price":1,"stock":1000}`); status != 201 {
					t.Fatalf("create: %d %s", status, body)
				}
			}
			bodies := []string{`{"product_id":1,"quantity":7}`, `{"product_id":2,"quantity":5}`}
			client := &http.Client{Timeout: 30 * time.Second}
			var mu sync.Mutex
			statuses := map[int]int{}
			ids := map[int]map[string]bool{0: {}, 1: {}}
			var unkeyed [2]atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 80 {
				wg.Go(func() {
					<-start
					if i%2 == 1 { // an unkeyed order on the same products
						status, body := call(t, "POST", a+"/orders", fmt.Sprintf(`{"product_id":%d,"quantity":1}`, 1+i%4/2))
						if status != 201 {
							t.Errorf("unkeyed order: %d %s", status, body)
						}
						unkeyed[i%4/2].Add(1)
						return
					}
					which := i / 2 % 2
					status, _, body := post(client, a+"/orders", bodies[which], "storm")
					mu.Lock()
					defer mu.Unlock()
					statuses[status]++
					if status == 201 {
						ids[which][string(regexp.MustCompile(`"id":\d+`).Find(body))] = true
					}
				})
			}
			close(start)
			wg.Wait()
			won := -1
			for w, set := range ids {
				if len(set) > 0 {
					if won >= 0 || len(set) != 1 {
						t.Fatalf("201s name orders %v for one key", ids)
					}
					won = w
				}
			}
			if won < 0 || statuses[201] == 0 || statuses[201]+statuses[422]+statuses[409] != 40 {
				t.Fatalf("statuses %v", statuses)
			}
			if statuses[201] > 20 || statuses[422] < 20-statuses[409] {
				t.Fatalf("statuses %v: the losing body was answered 201", statuses)
			}
			for p := range 2 {
				_, body := call(t, "GET", fmt.Sprintf("%s/products/%d", a, p+1), "")
				want := 1000 - unkeyed[p].Load()
				if p == won {
					want -= []int64{7, 5}[p]
				}
				if s := stockIn(t, body); s != want {
					t.Errorf("product %d: stock %d, want %d", p+1, s, want)
				}
				_, list := call(t, "GET", fmt.Sprintf("%s/orders?product_id=%d&limit=100", a, p+1), "")
				n := int64(len(regexp.MustCompile(`"id":`).FindAllString(list, -1)))
				if wantN := unkeyed[p].Load() + map[bool]int64{true: 1}[p == won]; n != wantN {
					t.Errorf("product %d: %d orders, want %d: %s", p+1, n, wantN, list)
				}
			}
		})
	}
}

// TestBatchedOrders_QueueFull runs orders against a slow MariaDB through a
// lane whose queue holds two: the orders past it are answered 503 with
// Retry-After rather than left waiting, nothing is stored for them, and
// every 201 is an order that exists.
func TestBatchedOrders_QueueFull(t *testing.T) {
	vars := sharedBackends(t, "redis://"+testenv.RedisAddr())
	dbcfg, err := mysql.ParseDSN(vars["MYSQL_DSN"])
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, dbcfg.Addr, testenv.Faults{MySQL: true})
	dbcfg.Addr = proxy.Addr()
	vars["MYSQL_DSN"] = dbcfg.FormatDSN()
	vars["ORDER_BATCHING"], vars["ORDER_LANES"], vars["ORDER_QUEUE_MAX"], vars["ORDER_BATCH_MAX"] = "on", "1", "2", "2"
	a := startReplica(t, vars, nil)
	if status, body := call(t, "POST", a+"/products", `{"name":"hot","price":1,"stock":1000}`); status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	proxy.SetFaults(testenv.Faults{MySQL: true, Latency: 50 * time.Millisecond})
	var created, refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 30 {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("POST", a+"/orders", strings.NewReader(`{"product_id":1,"quantity":1}`))
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			switch {
			case res.StatusCode == 201:
				created.Add(1)
			case res.StatusCode == 503 && res.Header.Get("Retry-After") != "":
				refused.Add(1)
			default:
				t.Errorf("order: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
			}
		})
	}
	close(start)
	wg.Wait()
	proxy.SetFaults(testenv.Faults{MySQL: true})
	if refused.Load() == 0 || created.Load()+refused.Load() != 30 {
		t.Fatalf("%d created, %d refused: a queue of two refused nobody", created.Load(), refused.Load())
	}
	_, body := call(t, "GET", a+"/products/1", "")
	if s := stockIn(t, body); s != 1000-created.Load() {
		t.Fatalf("stock %d after %d orders were created", s, created.Load())
	}
}
