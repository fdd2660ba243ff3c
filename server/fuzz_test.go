package server_test

import (
	"testing"

	"github.com/api-perf/api-perf/server"
)

// fuzzCreate drives one create route with arbitrary bodies over SQLite:
// every answer is 201 or a documented 4xx, never a 5xx or a panic, and a
// refused request writes nothing.
func fuzzCreate(f *testing.F, path, table string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	db := openStore(f, "sqlite", "")
	h := server.New(server.Config{Products: db, Orders: db, AccessLog: "off"}).Handler()
	ctx := newCtx()
	request(ctx, "POST", "/products", []byte(`{"name":"seed","price":1,"stock":1000000}`))
	h(ctx)
	count := func(t *testing.T) int {
		var n int
		if err := db.SQL().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := count(t)
		ctx := newCtx()
		request(ctx, "POST", path, body)
		h(ctx)
		switch st := ctx.Response.StatusCode(); st {
		case 201:
			if count(t) != before+1 {
				t.Fatalf("201 without exactly one new row")
			}
		case 400, 404, 409, 413, 415, 422:
			if string(ctx.Response.Header.ContentType()) != "application/problem+json" {
				t.Fatalf("%d without a problem body", st)
			}
			if count(t) != before {
				t.Fatalf("refused request (%d) changed %s", st, table)
			}
		default:
			t.Fatalf("body %q: status %d: %s", body, st, ctx.Response.Body())
		}
	})
}

func FuzzCreateProduct(f *testing.F) {
	fuzzCreate(f, "/products", "products",
		`{"name":"Test Product","price":99.99}`,
		`{"name":"a","description":null,"price":0,"stock":5}`,
		`{"name":"\u00e9\ud83d\ude00","price":9999999999.99,"stock":1000000000}`,
		`{"name":"x","price":1.005}`, `{"name":"x","price":"1"}`, `{"name":1}`, `{"name":"x","price":1e2}`,
		`{"name":"x","price":-0.0}`, `{}`, `[]`, `null`, `{"name":"x","price":1,"extra":{}}`)
}

func FuzzCreateOrder(f *testing.F) {
	fuzzCreate(f, "/orders", "orders",
		`{"product_id":1,"quantity":2}`, `{"product_id":1,"quantity":1000000}`, `{"product_id":2,"quantity":1}`,
		`{"product_id":1.0,"quantity":1}`, `{"product_id":"1","quantity":1}`, `{"product_id":9007199254740993,"quantity":1}`,
		`{"quantity":1}`, `{"product_id":1,"quantity":-5}`, `{"product_id":1,"quantity":1}{}`)
}
