package main

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
