package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/api-perf/api-perf/cache"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/storage"
)

// orderID is the id in a 201's body.
func (r *response) orderID(tb testing.TB) int64 {
	tb.Helper()
	var o struct {
		ID        int64 `json:"id"`
		ProductID int64 `json:"product_id"`
	}
	if err := json.Unmarshal(r.Body, &o); err != nil || o.ID == 0 {
		tb.Fatalf("no order in %s", r.Body)
	}
	return o.ID
}

// These tests are the reproductions of issue 10, one per defect, each on
// MariaDB and SQLite unless the defect is MariaDB's alone.

// Keys that differ only in case are two keys: each request gets its own
// order (reproduction 1 answered the second with the first one's order).
func TestAPI_Orders_KeysAreCaseSensitive(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":10}`).want(t, 201)
		ts.do(t, "POST", "/products", `{"name":"B","price":2,"stock":10}`).want(t, 201)
		lower := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "Idempotency-Key", "order-abc").want(t, 201)
		upper := ts.do(t, "POST", "/orders", `{"product_id":2,"quantity":2}`, "Idempotency-Key", "ORDER-ABC").want(t, 201)
		if lower.orderID(t) == upper.orderID(t) || upper.Header.Get("Idempotent-Replayed") != "" ||
			!strings.Contains(string(upper.Body), `"product_id":2`) || !strings.Contains(string(upper.Body), `"quantity":2`) {
			t.Fatalf("ORDER-ABC was answered %s after order-abc got %s", upper.Body, lower.Body)
		}
		again := ts.do(t, "POST", "/orders", `{"product_id":2,"quantity":2}`, "Idempotency-Key", "ORDER-ABC").want(t, 201)
		if string(again.Body) != string(upper.Body) {
			t.Fatalf("the replay of ORDER-ABC is %s, not %s", again.Body, upper.Body)
		}
		if n := ts.count(t, "orders"); n != 2 {
			t.Fatalf("%d orders, want 2", n)
		}
	})
}

// Two API clients that pick the same key and body each get their own
// order (reproduction 2 gave the second client the first one's).
func TestAPI_Orders_KeysAreScopedToTheClient(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		keys := []string{"client-one-0123456789", "client-two-0123456789"}
		ts := startServer(t, openStore(t, backend, ""), server.Config{APIKeys: keys})
		auth := func(i int) []string {
			return []string{"Idempotency-Key", "same-key", "Authorization", "Bearer " + keys[i]}
		}
		ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":10}`, auth(0)[2:]...).want(t, 201)
		one := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, auth(0)...).want(t, 201)
		two := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, auth(1)...).want(t, 201)
		if one.orderID(t) == two.orderID(t) || two.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("the second client got %s, the first %s", two.Body, one.Body)
		}
		again := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, auth(0)...).want(t, 201)
		if string(again.Body) != string(one.Body) {
			t.Fatalf("the first client's retry got %s, not %s", again.Body, one.Body)
		}
	})
}

// After its 24 hours a key places a new order (reproduction 3 answered
// with the day-old one). The record is expired, not purged: the store
// itself must ignore it.
func TestAPI_Orders_ExpiredKeyPlacesANewOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":10}`).want(t, 201)
		first := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "Idempotency-Key", "daily").want(t, 201)
		past := "'2000-01-01 00:00:00'"
		if backend == "sqlite" {
			past = "'2000-01-01T00:00:00.000Z'"
		}
		if _, err := ts.DB.SQL().Exec("UPDATE idempotency_records SET expires_at = " + past); err != nil {
			t.Fatal(err)
		}
		second := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "Idempotency-Key", "daily").want(t, 201)
		if second.orderID(t) == first.orderID(t) || second.Header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("after expiry the key answered %s (first %s)", second.Body, first.Body)
		}
		if n := ts.count(t, "orders"); n != 2 {
			t.Fatalf("%d orders, want 2", n)
		}
	})
}

// An order whose COMMIT succeeded but whose answer from MariaDB was lost is
// answered 201, once, and its product's cached stock is dropped
// (reproduction 4 answered it 503, skipped the invalidation, and a client
// without a key bought twice on its retry).
func TestAPI_Orders_CommittedIsAnsweredCreated(t *testing.T) {
	cfg, err := mysql.ParseDSN(testenv.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, cfg.Addr, testenv.Faults{MySQL: true})
	cfg.Addr = proxy.Addr()
	db := openStore(t, "mysql", cfg.FormatDSN())
	c, err := cache.NewLocal(cache.Options{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ts := startServer(t, db, server.Config{Products: db, Orders: db, Cache: c})
	ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":10}`).want(t, 201)
	ts.do(t, "GET", "/products/1", "").want(t, 200) // now cached with stock 10

	proxy.CutNextCommit(true)
	r := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":3}`).want(t, 201)
	if got := proxy.Stats().CommitsCutAfter; got != 1 {
		t.Fatalf("the proxy cut %d COMMITs after forwarding them, want 1", got)
	}
	if n := ts.count(t, "orders"); n != 1 {
		t.Fatalf("%d orders for one 201", n)
	}
	if o, _ := db.Order(context.Background(), r.orderID(t)); o == nil || o.Quantity != 3 {
		t.Fatalf("the answered order is %+v", o)
	}
	if p := ts.do(t, "GET", "/products/1", "").want(t, 200); !strings.Contains(string(p.Body), `"stock":7`) {
		t.Fatalf("the cached product was not invalidated: %s", p.Body)
	}

	// Cut before COMMIT: no order exists, and the answer says so (503);
	// the cache is left alone only because nothing committed.
	proxy.CutNextCommit(false)
	ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`).want(t, 503)
	if n := ts.count(t, "orders"); n != 1 {
		t.Fatalf("an order answered 503 exists: %d orders", n)
	}
}

// Client input that MariaDB alone used to fail with a 500 (reproduction 8):
// a total above DECIMAL(14,2), and Idempotency-Keys that are not printable
// ASCII, are refused before the database with a problem naming the field.
func TestAPI_Orders_LimitsBeforeTheDatabase(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"Gold","price":9999999999.99,"stock":1000000}`).want(t, 201)
		ts.do(t, "POST", "/products", `{"name":"Pen","price":1,"stock":1000}`).want(t, 201)
		r := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":101}`).want(t, 422)
		if !strings.Contains(string(r.Body), `"field":"quantity"`) || !strings.Contains(string(r.Body), "at most 100 units") {
			t.Fatalf("total too large: %s", r.Body)
		}
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":100}`).want(t, 201)
		for name, key := range map[string]string{
			"NotUTF8":        "k\xff\xfe",
			"UTF8":           "clé",
			"Tab":            "a\tb",
			"Space":          "a b",
			"TooLong":        strings.Repeat("k", 256),
			"EmptyQuoted":    `""`,
			"Unterminated":   `"abc`,
			"BadEscape":      `"a\nb"`,
			"UnescapedQuote": `"a"b"`,
		} {
			t.Run(name, func(t *testing.T) {
				r := ts.do(t, "POST", "/orders", `{"product_id":2,"quantity":1}`, "Idempotency-Key", key).want(t, 400)
				if !strings.Contains(string(r.Body), `"field":"Idempotency-Key"`) {
					t.Fatalf("the 400 does not name the header: %s", r.Body)
				}
			})
		}
		// The draft's quoted form, with a space and escapes, is one key;
		// the bare form of the same characters is the same key.
		q := ts.do(t, "POST", "/orders", `{"product_id":2,"quantity":1}`, "Idempotency-Key", `"a \"quoted\" key"`).want(t, 201)
		uuid := ts.do(t, "POST", "/orders", `{"product_id":2,"quantity":1}`, "Idempotency-Key", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`).want(t, 201)
		bare := ts.do(t, "POST", "/orders", `{"product_id":2,"quantity":1}`, "Idempotency-Key", `8e03978e-40d5-43e8-bc93-6894a57f9324`).want(t, 201)
		if q.orderID(t) == uuid.orderID(t) || string(bare.Body) != string(uuid.Body) || bare.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("quoted and bare keys: %s / %s / %s", q.Body, uuid.Body, bare.Body)
		}
		if n := ts.count(t, "orders"); n != 3 {
			t.Fatalf("%d orders, want 3", n)
		}
	})
}

// PUT replaces stock only when told to, and never over a sale it did not
// see (reproduction 7: a PUT without stock reset a sold-out product to
// 100).
func TestAPI_Products_PutNeedsStock(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"Rare","price":1,"stock":2}`).want(t, 201)
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":2}`).want(t, 201)
		r := ts.do(t, "PUT", "/products/1", `{"name":"Rare!","price":1}`).want(t, 422)
		if !strings.Contains(string(r.Body), `"field":"stock"`) {
			t.Fatalf("the 422 does not name stock: %s", r.Body)
		}
		ts.do(t, "PUT", "/products/1", `{"name":"Rare!","price":1,"stock":100}`).want(t, 428)
		ts.do(t, "PUT", "/products/1", `{"name":"Rare!","price":1,"stock":0}`).want(t, 200)
		p := ts.do(t, "GET", "/products/1", "").want(t, 200)
		if !strings.Contains(string(p.Body), `"stock":0`) || !strings.Contains(string(p.Body), `"name":"Rare!"`) {
			t.Fatalf("after the PUTs: %s", p.Body)
		}
		ts.do(t, "PUT", "/products/1", `{"name":"Rare!","price":1,"stock":5}`, "If-Match", p.Header.Get("ETag")).want(t, 200)
	})
}

// TestAPI_Products_WritesRacingOrders runs PUTs and PATCHes against a
// product while orders hammer it. Whatever the interleaving, the stock
// plus every unit ordered equals the initial stock plus the restocks that
// were answered 200: no write undoes an order, and no order is lost.
func TestAPI_Products_WritesRacingOrders(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		const initial = 400
		ts.do(t, "POST", "/products", fmt.Sprintf(`{"name":"Hot","price":1,"stock":%d}`, initial)).want(t, 201)
		var ordered, restocked atomic.Int64
		var statuses sync.Map
		note := func(what string, status int) {
			v, _ := statuses.LoadOrStore(fmt.Sprintf("%s %d", what, status), new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 40; i++ {
					r := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`)
					note("order", r.Status)
					if r.Status == 201 {
						ordered.Add(1)
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				g := ts.do(t, "GET", "/products/1", "")
				var p struct {
					Name  string `json:"name"`
					Stock int64  `json:"stock"`
				}
				if err := json.Unmarshal(g.Body, &p); err != nil {
					t.Error(err)
					return
				}
				// A restock under If-Match: 200, or 412 when an order came
				// between the read and the write.
				r := ts.do(t, "PUT", "/products/1", fmt.Sprintf(`{"name":"Hot","price":1,"stock":%d}`, p.Stock+5),
					"If-Match", g.Header.Get("ETag"))
				note("restock", r.Status)
				if r.Status == 200 {
					restocked.Add(5)
				}
				// A client restating the stock it read, without If-Match:
				// 200 only if that is still the stock, else 428; never a
				// write of the stale number.
				r = ts.do(t, "PUT", "/products/1", fmt.Sprintf(`{"name":"Hot %d","price":1,"stock":%d}`, i, p.Stock))
				note("stale PUT", r.Status)
				// A PATCH that does not mention stock.
				r = ts.do(t, "PATCH", "/products/1", fmt.Sprintf(`{"price":%d}`, 1+i%3))
				note("PATCH", r.Status)
			}
		}()
		wg.Wait()
		var out []string
		statuses.Range(func(k, v any) bool {
			out = append(out, fmt.Sprintf("%s: %d", k, v.(*atomic.Int64).Load()))
			return true
		})
		t.Logf("answers: %v", out)
		statuses.Range(func(k, _ any) bool {
			s := k.(string)
			if !strings.HasSuffix(s, " 200") && !strings.HasSuffix(s, " 201") && !strings.HasSuffix(s, " 409") &&
				!strings.HasSuffix(s, " 412") && !strings.HasSuffix(s, " 428") {
				t.Errorf("unexpected answer %s", s)
			}
			return true
		})
		var stock int64
		if err := ts.DB.SQL().QueryRow("SELECT stock FROM products WHERE id = 1").Scan(&stock); err != nil {
			t.Fatal(err)
		}
		if stock+ordered.Load() != initial+restocked.Load() {
			t.Fatalf("stock %d + ordered %d != initial %d + restocked %d", stock, ordered.Load(), initial, restocked.Load())
		}
		if n := int64(ts.count(t, "orders")); n != ordered.Load() {
			t.Fatalf("%d orders exist, %d were answered 201", n, ordered.Load())
		}
	})
}

// openProxiedStore is a MariaDB store reached through a chaos proxy, and
// the DSN that reaches the same database directly.
func openProxiedStore(t *testing.T, f testenv.Faults, timeout time.Duration) (*storage.DB, *testenv.ChaosProxy, string) {
	t.Helper()
	dsn := testenv.MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewChaosProxy(t, cfg.Addr, f)
	cfg.Addr = proxy.Addr()
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: cfg.FormatDSN(), QueryTimeout: timeout, MaxOpenConns: 32})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, proxy, dsn
}

// A key whose first request is still running is a 409 with Retry-After (a
// stock conflict, which is final, has none); nothing is stored, so the
// retry after the first request ends gets the truth.
func TestAPI_Orders_KeyInProgress(t *testing.T) {
	db, err := storage.Open(context.Background(), storage.Config{MySQLDSN: testenv.MySQLDSN(t), QueryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := startServer(t, db, server.Config{})
	ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":1}`).want(t, 201)
	// The first request, still in its transaction: it holds the key's record.
	tx, err := db.SQL().Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) " +
		"VALUES (UNHEX(REPEAT('00', 32)), 'busy', UNHEX(REPEAT('00', 32)), 201, '{}', CURRENT_TIMESTAMP(6), CURRENT_TIMESTAMP(6) + INTERVAL 1 DAY)"); err != nil {
		t.Fatal(err)
	}
	r := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "Idempotency-Key", "busy").want(t, 409)
	if r.Header.Get("Retry-After") == "" {
		t.Fatalf("in progress without Retry-After: %s", r.Body)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "Idempotency-Key", "busy").want(t, 201)
	r = ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "Idempotency-Key", "other").want(t, 409)
	if r.Header.Get("Retry-After") != "" {
		t.Fatalf("a stock conflict with Retry-After: %s", r.Body)
	}
}

// An Idempotency-Key header that is present but empty is a malformed key,
// not an absent one, and so is one sent twice when its first copy is empty.
// Both used to be read as "no key": the order was placed without one, so a
// client whose key came out empty (or whose second copy carried the real
// key) believed its retries safe and bought again on each.
func TestAPI_Orders_EmptyIdempotencyKeyIsRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"A","price":1,"stock":10}`).want(t, 201)
		for name, values := range map[string][]string{
			"Empty":           {""},
			"EmptyThenKey":    {"", "abc"},
			"KeyThenEmpty":    {"abc", ""},
			"Twice":           {"abc", "abc"},
			"EmptyQuoted":     {`""`},
			"EmptyThenQuoted": {"", `"abc"`},
		} {
			t.Run(name, func(t *testing.T) {
				req, err := http.NewRequest("POST", ts.URL+"/orders", strings.NewReader(`{"product_id":1,"quantity":1}`))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header["Idempotency-Key"] = values
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				r := (&response{Status: res.StatusCode, Header: res.Header, Body: b}).want(t, 400)
				if !strings.Contains(string(r.Body), `"field":"Idempotency-Key"`) {
					t.Fatalf("the 400 does not name the header: %s", r.Body)
				}
			})
		}
		if n := ts.count(t, "orders"); n != 0 {
			t.Fatalf("%d orders placed with a malformed key", n)
		}
	})
}
