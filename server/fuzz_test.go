package server_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/storage"
)

// createTarget is one create route under fuzzing: its path, the table a
// 201 adds a row to, and the seed bodies.
type createTarget struct {
	name, path, table string
	seeds             []string
}

var (
	productTarget = createTarget{"FuzzCreateProduct", "/products", "products", []string{
		`{"name":"Test Product","price":99.99}`,
		`{"name":"a","description":null,"price":0,"stock":5}`,
		`{"name":"\u00e9\ud83d\ude00","price":9999999999.99,"stock":1000000000}`,
		`{"name":"x","price":1.005}`, `{"name":"x","price":"1"}`, `{"name":1}`, `{"name":"x","price":1e2}`,
		`{"name":"x","price":-0.0}`, `{}`, `[]`, `null`, `{"name":"x","price":1,"extra":{}}`,
		"{\"name\":\"\xff\xfe\",\"price\":1}", `{"name":"\ud800","price":1}`,
		`{"name":"` + strings.Repeat("\u00e9", 200) + `","price":1}`, `{"name":"` + strings.Repeat("\U0001F600", 201) + `","price":1}`,
		`{"name":"x","price":1,"description":"` + strings.Repeat("\U0001F600", 10000) + `"}`,
	}}
	orderTarget = createTarget{"FuzzCreateOrder", "/orders", "orders", []string{
		`{"product_id":1,"quantity":2}`, `{"product_id":1,"quantity":1000000}`, `{"product_id":2,"quantity":1}`,
		`{"product_id":1.0,"quantity":1}`, `{"product_id":"1","quantity":1}`, `{"product_id":9007199254740993,"quantity":1}`,
		`{"quantity":1}`, `{"product_id":1,"quantity":-5}`, `{"product_id":1,"quantity":1}{}`,
		// Product 2 is priced at the maximum: 101 units exceed the largest total.
		`{"product_id":2,"quantity":101}`, `{"product_id":2,"quantity":1000000}`,
	}}
)

// createChecker sends one body to a create route of a fresh server over db
// and checks the answer: 201 or a documented 4xx that the OpenAPI document
// describes, never a 5xx or a panic, and a refused request writes nothing.
func createChecker(tb testing.TB, db *storage.DB, target createTarget) func(t *testing.T, body []byte) {
	h := newServer(tb, server.Config{Products: db, Orders: db, AccessLog: "off"}).Handler()
	for _, p := range []string{`{"name":"seed","price":1,"stock":1000000}`, `{"name":"gold","price":9999999999.99,"stock":1000000}`} {
		ctx := newCtx()
		request(ctx, "POST", "/products", []byte(p))
		h(ctx)
		if ctx.Response.StatusCode() != 201 {
			tb.Fatalf("seed product: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	count := func(t *testing.T) int {
		var n int
		if err := db.SQL().QueryRow("SELECT COUNT(*) FROM " + target.table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	return func(t *testing.T, body []byte) {
		before := count(t)
		ctx := newCtx()
		request(ctx, "POST", target.path, body)
		h(ctx)
		checkCreate(t, ctx, body, before, count(t))
	}
}

func checkCreate(t *testing.T, ctx *fasthttp.RequestCtx, body []byte, before, after int) {
	t.Helper()
	checkHandled(t, ctx)
	switch st := ctx.Response.StatusCode(); st {
	case 201:
		if after != before+1 {
			t.Fatalf("body %q: 201 without exactly one new row", body)
		}
	case 400, 404, 409, 413, 415, 422:
		if string(ctx.Response.Header.ContentType()) != "application/problem+json" {
			t.Fatalf("body %q: %d without a problem body", body, st)
		}
		if after != before {
			t.Fatalf("body %q: refused request (%d) changed the table", body, st)
		}
	default:
		t.Fatalf("body %q: status %d: %s", body, st, ctx.Response.Body())
	}
}

// fuzzCreate fuzzes one create route over SQLite, which costs the fuzzer
// no network; TestFuzzCorpus replays what it found on MariaDB too.
func fuzzCreate(f *testing.F, target createTarget) {
	for _, s := range target.seeds {
		f.Add([]byte(s))
	}
	check := createChecker(f, openStore(f, "sqlite", ""), target)
	f.Fuzz(check)
}

func FuzzCreateProduct(f *testing.F) { fuzzCreate(f, productTarget) }

func FuzzCreateOrder(f *testing.F) { fuzzCreate(f, orderTarget) }

// TestFuzzCorpus replays every seed and every input the fuzzers saved
// under testdata/fuzz against MariaDB as well as SQLite: MariaDB refuses
// some values SQLite stores (a total over DECIMAL(14,2), invalid UTF-8 in
// strict mode), and those must be 4xx answers decided before the database,
// never 500s.
func TestFuzzCorpus(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		db := openStore(t, backend, "")
		for _, target := range []createTarget{productTarget, orderTarget} {
			check := createChecker(t, db, target)
			inputs := append([]string(nil), target.seeds...)
			inputs = append(inputs, readCorpus(t, filepath.Join("testdata", "fuzz", target.name))...)
			for i, in := range inputs {
				t.Run(target.name+"/"+strconv.Itoa(i), func(t *testing.T) { check(t, []byte(in)) })
			}
		}
	})
}

// readCorpus reads the []byte inputs of a Go fuzz corpus directory.
func readCorpus(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		if !sc.Scan() || sc.Text() != "go test fuzz v1" || !sc.Scan() {
			t.Fatalf("%s is not a fuzz corpus file", e.Name())
		}
		line := sc.Text()
		if !strings.HasPrefix(line, "[]byte(") || !strings.HasSuffix(line, ")") {
			t.Fatalf("%s: unexpected value %.40s", e.Name(), line)
		}
		s, err := strconv.Unquote(line[len("[]byte(") : len(line)-1])
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		t.Fatalf("no corpus in %s", dir)
	}
	return out
}

// FuzzIdempotencyKey sends one order twice with an arbitrary
// Idempotency-Key value. The first answer is a 201 or a 400 naming the
// header, never anything else; a 400 writes nothing; a 201 stores the key,
// so the second answer is its replay, byte for byte, and places no second
// order. (The fuzzer may send a key again in a later run: its first answer
// is then already a replay.) The seeds run with the unit tests, on SQLite.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{
		"k", "order-abc", "ORDER-ABC", `"abc"`, `"a \"b\" \\ c"`, `""`, `"`, `"abc`, `a"b`, `a b`, " ", "",
		"\x00", "a\tb", "a\x7fb", "é", "\xff", strings.Repeat("k", 255), strings.Repeat("k", 256),
		`"` + strings.Repeat(`\\`, 255) + `"`, `"` + strings.Repeat(`\\`, 256) + `"`, `"abc";x=1`, `:YWJj:`,
	} {
		f.Add([]byte(s))
	}
	db := openStore(f, "sqlite", "")
	h := newServer(f, server.Config{Products: db, Orders: db, AccessLog: "off"}).Handler()
	ctx := newCtx()
	request(ctx, "POST", "/products", []byte(`{"name":"seed","price":1,"stock":1000000000}`))
	h(ctx)
	if ctx.Response.StatusCode() != 201 {
		f.Fatalf("seed product: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	count := func(t *testing.T) (n int) {
		if err := db.SQL().QueryRow("SELECT COUNT(*) FROM orders").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		send := func() *fasthttp.RequestCtx {
			ctx := newCtx()
			request(ctx, "POST", "/orders", []byte(`{"product_id":1,"quantity":1}`))
			ctx.Request.Header.SetBytesV("Idempotency-Key", key)
			h(ctx)
			return ctx
		}
		before := count(t)
		first := send()
		switch st := first.Response.StatusCode(); st {
		case 201:
			want := before + 1
			if string(first.Response.Header.Peek("Idempotent-Replayed")) == "true" {
				want = before
			}
			if count(t) != want {
				t.Fatalf("key %q: 201 (replayed %q) with %d new orders", key, first.Response.Header.Peek("Idempotent-Replayed"), count(t)-before)
			}
			body := append([]byte(nil), first.Response.Body()...)
			again := send()
			if again.Response.StatusCode() != 201 || string(again.Response.Body()) != string(body) ||
				string(again.Response.Header.Peek("Idempotent-Replayed")) != "true" || count(t) != want {
				t.Fatalf("key %q: retry answered %d %s (replayed %q), first %s", key, again.Response.StatusCode(),
					again.Response.Body(), again.Response.Header.Peek("Idempotent-Replayed"), body)
			}
		case 400:
			if !strings.Contains(string(first.Response.Body()), `"field":"Idempotency-Key"`) || count(t) != before {
				t.Fatalf("key %q: 400 %s, %d orders written", key, first.Response.Body(), count(t)-before)
			}
		default:
			t.Fatalf("key %q: status %d: %s", key, st, first.Response.Body())
		}
	})
}
