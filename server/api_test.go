package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/limiter"
	"github.com/api-perf/api-perf/server"
)

// TestAPI_ReadmeExamples runs the README's curl examples verbatim.
func TestAPI_ReadmeExamples(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		r := ts.do(t, "POST", "/products", `{"name": "Test Product", "price": 99.99}`).want(t, 201)
		if !strings.Contains(string(r.Body), `"price":99.99`) || r.Header.Get("Location") != "/products/1" {
			t.Fatalf("create: %s, Location %q", r.Body, r.Header.Get("Location"))
		}
		r = ts.do(t, "GET", "/products", "").want(t, 200)
		if !strings.Contains(string(r.Body), `"price":99.99`) || !strings.Contains(string(r.Body), `"next_cursor":null`) {
			t.Fatalf("list: %s", r.Body)
		}
		r = ts.do(t, "POST", "/orders", `{"product_id": 1, "quantity": 2}`).want(t, 201)
		if !strings.Contains(string(r.Body), `"unit_price":99.99`) || !strings.Contains(string(r.Body), `"total":199.98`) {
			t.Fatalf("order: %s", r.Body)
		}
		r = ts.do(t, "GET", "/orders", "").want(t, 200)
		if !strings.Contains(string(r.Body), `"status":"pending"`) {
			t.Fatalf("orders: %s", r.Body)
		}
		ts.do(t, "GET", "/api/v1/products/1", "").want(t, 200)
	})
}

func TestAPI_Products(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		r := ts.do(t, "POST", "/api/v1/products", `{"name":"Lamp","description":"bright","price":10.5,"stock":3}`).want(t, 201)
		if r.Header.Get("Location") != "/api/v1/products/1" || r.Header.Get("ETag") == "" {
			t.Fatalf("headers %v", r.Header)
		}
		p := r.JSON(t)
		if p["price"].(fmt.Stringer).String() != "10.50" || p["stock"].(fmt.Stringer).String() != "3" {
			t.Fatalf("created %s", r.Body)
		}

		t.Run("ETag", func(t *testing.T) {
			g := ts.do(t, "GET", "/products/1", "").want(t, 200)
			etag := g.Header.Get("ETag")
			if etag != r.Header.Get("ETag") {
				t.Fatalf("GET ETag %q, create ETag %q", etag, r.Header.Get("ETag"))
			}
			ts.do(t, "GET", "/products/1", "", "If-None-Match", etag).want(t, 304)
			ts.do(t, "GET", "/products/1", "", "If-None-Match", `"other"`).want(t, 200)
			ts.do(t, "PUT", "/products/1", `{"name":"Lamp","price":11,"stock":3}`, "If-Match", `"stale"`).want(t, 412)
			u := ts.do(t, "PUT", "/products/1", `{"name":"Lamp 2","price":11,"stock":3}`, "If-Match", etag).want(t, 200)
			if u.Header.Get("ETag") == etag || !strings.Contains(string(u.Body), `"price":11.00`) ||
				!strings.Contains(string(u.Body), `"description":null`) || !strings.Contains(string(u.Body), `"stock":3`) {
				t.Fatalf("PUT is a full replace: %s", u.Body)
			}
			ts.do(t, "GET", "/products/1", "", "If-None-Match", etag).want(t, 200)
		})
		t.Run("MergePatch", func(t *testing.T) {
			ts.do(t, "PATCH", "/products/1", `{"description":"dim","stock":7}`, "Content-Type", "application/merge-patch+json").want(t, 428)
			etag := ts.do(t, "GET", "/products/1", "").want(t, 200).Header.Get("ETag")
			r := ts.do(t, "PATCH", "/products/1", `{"description":"dim","stock":7}`, "Content-Type", "application/merge-patch+json",
				"If-Match", etag).want(t, 200)
			if !strings.Contains(string(r.Body), `"description":"dim"`) || !strings.Contains(string(r.Body), `"name":"Lamp 2"`) ||
				!strings.Contains(string(r.Body), `"stock":7`) {
				t.Fatalf("patch: %s", r.Body)
			}
			r = ts.do(t, "PATCH", "/products/1", `{"description":null}`).want(t, 200)
			if !strings.Contains(string(r.Body), `"description":null`) {
				t.Fatalf("null clears: %s", r.Body)
			}
			ts.do(t, "PATCH", "/products/1", `{"name":null}`).want(t, 422)
			ts.do(t, "PATCH", "/products/999", `{"name":"x"}`).want(t, 404)
		})
		t.Run("Pagination", func(t *testing.T) {
			for i := 0; i < 4; i++ {
				ts.do(t, "POST", "/products", fmt.Sprintf(`{"name":"P%d","price":1}`, i)).want(t, 201)
			}
			seen := 0
			path := "/products?limit=2"
			for pages := 0; ; pages++ {
				if pages > 5 {
					t.Fatal("pagination does not end")
				}
				r := ts.do(t, "GET", path, "").want(t, 200).JSON(t)
				seen += len(r["items"].([]any))
				if r["next_cursor"] == nil {
					break
				}
				path = "/products?limit=2&cursor=" + r["next_cursor"].(string)
			}
			if seen != 5 {
				t.Fatalf("paged over %d products, want 5", seen)
			}
			ts.do(t, "GET", "/products?limit=0", "").want(t, 422)
			ts.do(t, "GET", "/products?limit=101", "").want(t, 422)
			ts.do(t, "GET", "/products?cursor=%%%", "").want(t, 422)
		})
		t.Run("Delete", func(t *testing.T) {
			ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`).want(t, 201)
			ts.do(t, "DELETE", "/products/1", "").want(t, 409)
			ts.do(t, "DELETE", "/products/2", "").want(t, 204)
			ts.do(t, "GET", "/products/2", "").want(t, 404)
			ts.do(t, "DELETE", "/products/2", "").want(t, 404)
		})
	})
}

func TestAPI_Orders(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"Pen","price":0.1,"stock":10}`).want(t, 201)
		o := ts.do(t, "POST", "/api/v1/orders", `{"product_id":1,"quantity":3}`).want(t, 201)
		if o.Header.Get("Location") != "/api/v1/orders/1" || !strings.Contains(string(o.Body), `"total":0.30`) {
			t.Fatalf("order %s %v", o.Body, o.Header)
		}
		stock := func() string {
			return ts.do(t, "GET", "/products/1", "").want(t, 200).JSON(t)["stock"].(fmt.Stringer).String()
		}
		if stock() != "7" {
			t.Fatalf("stock %s after ordering 3 of 10", stock())
		}
		ts.do(t, "GET", "/orders/1", "").want(t, 200)
		ts.do(t, "GET", "/orders/2", "").want(t, 404)
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":8}`).want(t, 409)
		ts.do(t, "POST", "/orders", `{"product_id":42,"quantity":1}`).want(t, 404)

		ts.do(t, "PATCH", "/orders/1", `{"status":"shipped"}`).want(t, 409)
		ts.do(t, "PATCH", "/orders/1", `{"status":"paid"}`).want(t, 200)
		ts.do(t, "PATCH", "/orders/1", `{"status":"lost"}`).want(t, 422)
		ts.do(t, "PATCH", "/orders/1", `{"status":"cancelled"}`).want(t, 200)
		if stock() != "10" {
			t.Fatalf("cancel did not return stock: %s", stock())
		}
		ts.do(t, "PATCH", "/orders/1", `{"status":"paid"}`).want(t, 409)

		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":4}`).want(t, 201)
		if stock() != "6" {
			t.Fatalf("stock %s", stock())
		}
		ts.do(t, "DELETE", "/orders/2", "").want(t, 204)
		if stock() != "10" {
			t.Fatalf("delete did not return stock: %s", stock())
		}
		ts.do(t, "DELETE", "/orders/2", "").want(t, 404)

		l := ts.do(t, "GET", "/orders?status=cancelled&product_id=1", "").want(t, 200).JSON(t)
		if n := len(l["items"].([]any)); n != 1 {
			t.Fatalf("filtered list has %d orders, want 1", n)
		}
		ts.do(t, "GET", "/orders?status=nope", "").want(t, 422)
		ts.do(t, "GET", "/orders?product_id=x", "").want(t, 422)

		// Orders page as products do: limit=1 walks the three, one a page.
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`).want(t, 201)
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`).want(t, 201)
		pages := 0
		for path := "/orders?limit=1"; path != ""; pages++ {
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			r := ts.do(t, "GET", path, "").want(t, 200).JSON(t)
			if n := len(r["items"].([]any)); n != 1 {
				t.Fatalf("page %d has %d orders, want 1", pages, n)
			}
			path = ""
			if c, ok := r["next_cursor"].(string); ok {
				path = "/orders?limit=1&cursor=" + c
			}
		}
		if pages != 3 {
			t.Fatalf("paged over %d orders, want 3", pages)
		}
	})
}

// TestAPI_Oversell: 400 concurrent single-unit orders against 50 units.
func TestAPI_Oversell(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"Hot","price":5,"stock":50}`).want(t, 201)
		ts.do(t, "POST", "/products", `{"name":"Warm","price":5,"stock":30}`).want(t, 201)
		var mu sync.Mutex
		statuses := map[int]map[int]int{1: {}, 2: {}}
		var wg sync.WaitGroup
		for i := 0; i < 400; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				id := 1 + i%2
				if i < 200 {
					id = 1
				}
				r := ts.do(t, "POST", "/orders", fmt.Sprintf(`{"product_id":%d,"quantity":1}`, id))
				mu.Lock()
				statuses[id][r.Status]++
				mu.Unlock()
			}(i)
		}
		wg.Wait()
		if statuses[1][201] != 50 || statuses[2][201] != 30 {
			t.Fatalf("created %d and %d orders for 50 and 30 units: %v", statuses[1][201], statuses[2][201], statuses)
		}
		for id, m := range statuses {
			for st := range m {
				if st != 201 && st != 409 {
					t.Fatalf("product %d got status %d: %v", id, st, statuses)
				}
			}
		}
		for id := 1; id <= 2; id++ {
			p := ts.do(t, "GET", fmt.Sprintf("/products/%d", id), "").want(t, 200).JSON(t)
			if p["stock"].(fmt.Stringer).String() != "0" {
				t.Fatalf("product %d stock %v", id, p["stock"])
			}
		}
		if n := ts.count(t, "orders"); n != 80 {
			t.Fatalf("%d order rows, want 80", n)
		}
	})
}

func TestAPI_Idempotency(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"Once","price":1,"stock":100}`).want(t, 201)
		var wg sync.WaitGroup
		var mu sync.Mutex
		bodies := map[string]int{}
		statuses := map[int]int{}
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":2}`, "Idempotency-Key", "abc-123")
				mu.Lock()
				defer mu.Unlock()
				statuses[r.Status]++
				if r.Status == 201 {
					bodies[string(r.Body)]++
				}
			}()
		}
		wg.Wait()
		if statuses[201] < 1 || statuses[201]+statuses[409] != 20 || len(bodies) != 1 {
			t.Fatalf("statuses %v, distinct 201 bodies %d", statuses, len(bodies))
		}
		if n := ts.count(t, "orders"); n != 1 {
			t.Fatalf("%d orders for one idempotency key", n)
		}
		r := ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":2}`, "Idempotency-Key", "abc-123").want(t, 201)
		if _, ok := bodies[string(r.Body)]; !ok || r.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay differs: %s", r.Body)
		}
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":3}`, "Idempotency-Key", "abc-123").want(t, 422)
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":3}`, "Idempotency-Key", strings.Repeat("k", 256)).want(t, 400)
		// A failed first attempt is replayed as the same failure.
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1000}`, "Idempotency-Key", "big").want(t, 409)
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1000}`, "Idempotency-Key", "big").want(t, 409)
	})
}

// TestAPI_BadInput sends malformed and hostile requests: each gets its
// documented 4xx and the database is left as it was.
func TestAPI_BadInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"Base","price":1,"stock":5}`).want(t, 201)
		cases := []struct {
			name, method, path, body string
			header                   []string
			status                   int
			field                    string
		}{
			{"MalformedJSON", "POST", "/products", `{"name":`, nil, 400, ""},
			{"NotAnObject", "POST", "/products", `[1,2]`, nil, 400, ""},
			{"TrailingGarbage", "POST", "/products", `{"name":"a","price":1} x`, nil, 400, ""},
			{"WrongTypeName", "POST", "/products", `{"name":1,"price":1}`, nil, 422, "name"},
			{"PriceString", "POST", "/products", `{"name":"a","price":"1.00"}`, nil, 422, "price"},
			{"ThreeDecimals", "POST", "/products", `{"name":"a","price":9.999}`, nil, 422, "price"},
			{"NegativePrice", "POST", "/products", `{"name":"a","price":-1}`, nil, 422, "price"},
			{"ExponentPrice", "POST", "/products", `{"name":"a","price":1e3}`, nil, 422, "price"},
			{"HugePrice", "POST", "/products", `{"name":"a","price":123456789012345678901234567890}`, nil, 422, "price"},
			{"HugeStock", "POST", "/products", `{"name":"a","price":1,"stock":99999999999999999999}`, nil, 422, "stock"},
			{"MissingName", "POST", "/products", `{"price":1}`, nil, 422, "name"},
			{"EmptyName", "POST", "/products", `{"name":"  ","price":1}`, nil, 422, "name"},
			{"LongName", "POST", "/products", `{"name":"` + strings.Repeat("é", 201) + `","price":1}`, nil, 422, "name"},
			{"UnknownField", "POST", "/products", `{"name":"a","price":1,"admin":true}`, nil, 422, "admin"},
			{"NegativeQuantity", "POST", "/orders", `{"product_id":1,"quantity":-1}`, nil, 422, "quantity"},
			{"ZeroQuantity", "POST", "/orders", `{"product_id":1,"quantity":0}`, nil, 422, "quantity"},
			{"FractionalQuantity", "POST", "/orders", `{"product_id":1,"quantity":1.5}`, nil, 422, "quantity"},
			{"QuantityString", "POST", "/orders", `{"product_id":1,"quantity":"1"}`, nil, 422, "quantity"},
			{"NullProduct", "POST", "/orders", `{"product_id":null,"quantity":1}`, nil, 422, "product_id"},
			{"SQLLookingName", "POST", "/orders", `{"product_id":"1; DROP TABLE products","quantity":1}`, nil, 422, "product_id"},
			{"WrongContentType", "POST", "/products", `{"name":"a","price":1}`, []string{"Content-Type", "text/plain"}, 415, ""},
			{"FormContentType", "POST", "/orders", `product_id=1`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, ""},
			{"NonNumericID", "GET", "/products/abc", "", nil, 422, "id"},
			{"NegativeID", "GET", "/products/-1", "", nil, 422, "id"},
			{"OverflowID", "GET", "/orders/99999999999999999999", "", nil, 422, "id"},
			{"UnknownID", "GET", "/products/123456", "", nil, 404, ""},
			{"UnknownRoute", "GET", "/nope", "", nil, 404, ""},
			{"UnknownNested", "GET", "/products/1/reviews", "", nil, 404, ""},
			{"WrongMethod", "DELETE", "/products", "", nil, 405, ""},
			{"PatchMissingBody", "PATCH", "/orders/1", "", []string{"Content-Type", "application/json"}, 400, ""},
		}
		products, orders := ts.count(t, "products"), ts.count(t, "orders")
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := ts.do(t, c.method, c.path, c.body, c.header...).want(t, c.status)
				if c.field != "" && !strings.Contains(string(r.Body), `"field":"`+c.field+`"`) {
					t.Fatalf("no error for field %q: %s", c.field, r.Body)
				}
				if c.status == 405 && r.Header.Get("Allow") == "" {
					t.Fatal("405 without Allow")
				}
			})
		}
		if p, o := ts.count(t, "products"), ts.count(t, "orders"); p != products || o != orders {
			t.Fatalf("bad input changed the database: products %d->%d, orders %d->%d", products, p, orders, o)
		}
		// An SQL-looking string is just data.
		r := ts.do(t, "POST", "/products", `{"name":"'; DROP TABLE products; --","price":1}`).want(t, 201)
		if !strings.Contains(string(r.Body), `DROP TABLE`) || ts.count(t, "products") != products+1 {
			t.Fatalf("SQL-looking name: %s", r.Body)
		}
	})
}

// TestAPI_InvalidUnicodeIsRefused sends strings that are not Unicode text:
// raw bytes that are not UTF-8 (a JSON text must be UTF-8) and \u escapes
// of lone UTF-16 surrogates. The decoder turns both into U+FFFD, so the
// check meant to refuse them ("must be a valid UTF-8 string") never fired:
// they were stored with the client's characters silently replaced, and
// answered 201 as if the product had the name the client sent.
func TestAPI_InvalidUnicodeIsRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		ts := newTestServer(t, backend)
		ts.do(t, "POST", "/products", `{"name":"Base","price":1,"stock":5}`).want(t, 201)
		ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`).want(t, 201)
		cases := []struct {
			name, method, path, body string
			status                   int
			field                    string
		}{
			{"RawInvalidName", "POST", "/products", "{\"name\":\"a\xff\xfeb\",\"price\":1}", 400, ""},
			{"RawSurrogateBytes", "POST", "/products", "{\"name\":\"a\xed\xa0\x80\",\"price\":1}", 400, ""},
			{"RawOverlong", "POST", "/products", "{\"name\":\"a\xc0\xaf\",\"price\":1}", 400, ""},
			{"RawInvalidKey", "POST", "/products", "{\"name\":\"a\",\"price\":1,\"\xff\":1}", 400, ""},
			{"LoneHigh", "POST", "/products", `{"name":"a\ud800","price":1}`, 422, "name"},
			{"LoneLow", "POST", "/products", `{"name":"\udc00a","price":1}`, 422, "name"},
			{"HighThenLetter", "POST", "/products", `{"name":"\ud83d\u0041","price":1}`, 422, "name"},
			{"SwappedPair", "POST", "/products", `{"name":"\ude00\ud83d","price":1}`, 422, "name"},
			{"LoneInDescription", "POST", "/products", `{"name":"a","price":1,"description":"x\uDBFF"}`, 422, "description"},
			{"PatchName", "PATCH", "/products/1", `{"name":"\ud800"}`, 422, "name"},
			{"PatchDescription", "PATCH", "/products/1", `{"description":"\udfff"}`, 422, "description"},
			{"PutName", "PUT", "/products/1", `{"name":"\ud800","price":1,"stock":4}`, 422, "name"},
			{"OrderStatus", "PATCH", "/orders/1", `{"status":"paid\ud800"}`, 422, "status"},
		}
		products := ts.count(t, "products")
		base := ts.do(t, "GET", "/products/1", "").want(t, 200)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := ts.do(t, c.method, c.path, c.body).want(t, c.status)
				if c.field != "" && !strings.Contains(string(r.Body), `"field":"`+c.field+`"`) {
					t.Fatalf("no error for field %q: %s", c.field, r.Body)
				}
			})
		}
		if p := ts.count(t, "products"); p != products {
			t.Fatalf("invalid text created %d products", p-products)
		}
		if now := ts.do(t, "GET", "/products/1", "").want(t, 200); string(now.Body) != string(base.Body) {
			t.Fatalf("invalid text changed the product: %s, was %s", now.Body, base.Body)
		}
		// Text that only looks like an escape, and a proper pair, are fine.
		r := ts.do(t, "POST", "/products", `{"name":"\\ud800 \ud83d\ude00","price":1}`).want(t, 201)
		if !strings.Contains(string(r.Body), `"name":"\\ud800 \U0001F600"`) && !strings.Contains(string(r.Body), "\\\\ud800 \U0001F600") {
			t.Fatalf("escaped backslash and a surrogate pair: %s", r.Body)
		}
	})
}

func TestAPI_APIKeys(t *testing.T) {
	db := openStore(t, "sqlite", "")
	ts := startServer(t, db, server.Config{APIKeys: []string{"0123456789abcdef-key"}})
	r := ts.do(t, "POST", "/products", `{"name":"a","price":1}`).want(t, 401)
	if r.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	ts.do(t, "POST", "/products", `{"name":"a","price":1}`, "Authorization", "Bearer wrong-key-wrong-key").want(t, 401)
	ts.do(t, "POST", "/products", `{"name":"a","price":1}`, "Authorization", "Bearer 0123456789abcdef-key").want(t, 201)
	ts.do(t, "GET", "/products/1", "").want(t, 200) // reads stay open
}

// fixedLimiter allows reads and refuses writes with fixed numbers; the
// limiter package tests the real GCRA, this checks how the server renders
// a decision.
type fixedLimiter struct{}

func (fixedLimiter) Allow(_ context.Context, _ string, p apiperf.RatePolicy, _ int) (apiperf.RateDecision, error) {
	if p.Name == "read" {
		return apiperf.RateDecision{Allowed: true, Limit: p.Burst, Remaining: 9, ResetAfter: 100 * time.Millisecond}, nil
	}
	return apiperf.RateDecision{Limit: p.Burst, RetryAfter: 1500 * time.Millisecond, ResetAfter: 2 * time.Second}, nil
}

func TestAPI_RateLimitHeaders(t *testing.T) {
	db := openStore(t, "sqlite", "")
	ts := startServer(t, db, server.Config{
		Limiter:    fixedLimiter{},
		ReadLimit:  apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second, Burst: 10},
		WriteLimit: apiperf.RatePolicy{Name: "write", Rate: 1, Period: time.Second, Burst: 1},
	})
	r := ts.do(t, "GET", "/products", "").want(t, 200)
	if r.Header.Get("RateLimit-Policy") != `"read";q=10;w=1` || r.Header.Get("RateLimit") != `"read";r=9;t=1` {
		t.Fatalf("headers %v", r.Header)
	}
	r = ts.do(t, "POST", "/products", `{"name":"a","price":1}`).want(t, 429)
	if r.Header.Get("Retry-After") != "2" || r.Header.Get("RateLimit") != `"write";r=0;t=2` ||
		r.Header.Get("RateLimit-Policy") != `"write";q=1;w=1` || !strings.Contains(string(r.Body), "retry after 2s") {
		t.Fatalf("429 headers %v, body %s", r.Header, r.Body)
	}
	ts.do(t, "GET", "/healthz", "").want(t, 200)
	if n := ts.count(t, "products"); n != 0 {
		t.Fatal("a limited write reached the database")
	}
}

// TestAPI_RateLimit runs the in-process limiter behind the server, wired as
// cmd wires it: the server asks it directly, per route class, and renders
// its decisions. A class without a policy is not limited at all.
func TestAPI_RateLimit(t *testing.T) {
	db := openStore(t, "sqlite", "")
	lim := limiter.NewLocal()
	t.Cleanup(lim.Close)
	ts := startServer(t, db, server.Config{
		Limiter:   lim,
		ReadLimit: apiperf.RatePolicy{Name: "read", Rate: 2, Period: time.Hour, Burst: 2},
	})
	// Reset and retry times count down in whole seconds, rounded up: on a
	// machine slow enough for a second to pass between two requests they
	// read one less, which is as right as the exact value.
	within := func(got string, format string, want int) bool {
		return got == fmt.Sprintf(format, want) || got == fmt.Sprintf(format, want-1)
	}
	for i, want := range []struct{ r, t int }{{1, 1800}, {0, 3600}} {
		r := ts.do(t, "GET", "/products", "").want(t, 200)
		if r.Header.Get("RateLimit-Policy") != `"read";q=2;w=3600` || !within(r.Header.Get("RateLimit"), `"read";r=`+strconv.Itoa(want.r)+`;t=%d`, want.t) {
			t.Fatalf("read %d: headers %v, want RateLimit r=%d, t=%d", i, r.Header, want.r, want.t)
		}
	}
	r := ts.do(t, "GET", "/api/v1/products/1", "").want(t, 429)
	// The next token is half an hour away, less the time the test has
	// taken so far.
	if !within(r.Header.Get("Retry-After"), "%d", 1800) || !within(r.Header.Get("RateLimit"), `"read";r=0;t=%d`, 3600) {
		t.Fatalf("429 headers %v", r.Header)
	}
	// A token that is not a configured key names no other client: the
	// address has spent its allowance whatever it sends.
	ts.do(t, "GET", "/products", "", "Authorization", "Bearer someone-else-entirely").want(t, 429)
	// Writes have no policy here: never limited, and no RateLimit headers.
	for range 3 {
		r := ts.do(t, "POST", "/products", `{"name":"a","price":1}`).want(t, 201)
		if r.Header.Get("RateLimit") != "" || r.Header.Get("RateLimit-Policy") != "" {
			t.Fatalf("an unlimited write with rate-limit headers: %v", r.Header)
		}
	}
	ts.do(t, "GET", "/healthz", "").want(t, 200)
}

// TestAPI_RateLimitInvalidPolicy: a policy the limiter refuses to apply is
// the server's misconfiguration, not the client's mistake: a logged 500
// with a problem body, never a 422 that blames the request, nor a panic.
func TestAPI_RateLimitInvalidPolicy(t *testing.T) {
	db := openStore(t, "sqlite", "")
	lim := limiter.NewLocal()
	t.Cleanup(lim.Close)
	ts := startServer(t, db, server.Config{
		Limiter:   lim,
		ReadLimit: apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Second},
	})
	r := ts.do(t, "GET", "/products", "").want(t, 500)
	if strings.Contains(string(r.Body), "burst") {
		t.Fatalf("a 500 leaks its cause: %s", r.Body)
	}
}

// TestAPI_BodyTooLarge sends a 10 MB body over a raw connection: the server
// answers 413 from the Content-Length alone, without reading the body (an
// HTTP client library would report the early close instead of the answer).
func TestAPI_BodyTooLarge(t *testing.T) {
	ts := newTestServer(t, "sqlite")
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second)) //nolint:errcheck
	fmt.Fprintf(conn, "POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"name\":\"", 10<<20)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	req, _ := http.NewRequest("POST", ts.URL+"/products", nil)
	checkResponse(t, req, res, body)
	if res.StatusCode != 413 || res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), `"request_id"`) {
		t.Fatalf("status %d, %q: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	if n := ts.count(t, "products"); n != 0 {
		t.Fatalf("%d products after a refused body", n)
	}
}
