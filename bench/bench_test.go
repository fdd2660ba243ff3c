package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The benchmarks drive the real api-perf binary over loopback, built once
// from ./cmd/api-perf. Nothing is built or started unless a benchmark runs,
// so a plain "go test ./..." costs nothing here:
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// The MySQL and Redis backends need MariaDB at 127.0.0.1:3306 and Redis at
// 127.0.0.1:6379 (BENCH_MYSQL_ADDR / BENCH_REDIS_ADDR override them); the
// benchmarks fail, never skip, when they are missing. Each run creates its
// own database and claims an empty Redis logical database, and removes
// both at the end.

// teardown releases everything the benchmarks started.
var teardown Group

func TestMain(m *testing.M) {
	code := m.Run()
	if err := teardown.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: clean-up:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// backend is one running api-perf configuration with its seeded products.
type backend struct {
	addr        string
	hotID       int64   // a product read by the warm benchmarks
	orderIDs    []int64 // products with a huge stock, for uncontended orders
	contendedID int64   // the one product every contended order hits
	missingID   int64   // an id that does not exist
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error

	backendsMu sync.Mutex
	backends   = map[string]*backend{}
)

// apiPerf builds cmd/api-perf once per test binary.
func apiPerf(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		root, err := ModuleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "api-perf-bench-")
		if err != nil {
			buildErr = err
			return
		}
		teardown.Add(func() error { return os.RemoveAll(dir) })
		binary = filepath.Join(dir, "api-perf")
		buildErr = Build(context.Background(), root, "./cmd/api-perf", binary)
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binary
}

// Backend names.
const (
	mysqlRedis        = "mysql+redis"         // MySQL store, Redis cache, limiter off
	mysqlRedisLimited = "mysql+redis+limiter" // the same with the Redis limiter on a huge policy
	embedded          = "embedded"            // SQLite, in-process cache, limiter off
)

// mysqlOnce shares one database and Redis logical database between the
// two MySQL-backed servers.
var (
	mysqlOnce   sync.Once
	mysqlDB     *Database
	sharedRedis *RedisDB
	mysqlErr    error
)

func sharedMySQL(tb testing.TB) (*Database, *RedisDB) {
	tb.Helper()
	bin := apiPerf(tb)
	mysqlOnce.Do(func() {
		ctx := context.Background()
		if mysqlDB, mysqlErr = CreateDatabase(ctx, "apiperf_gobench"); mysqlErr != nil {
			return
		}
		teardown.Add(mysqlDB.Drop)
		if sharedRedis, mysqlErr = ClaimRedisDB(ctx); mysqlErr != nil {
			return
		}
		teardown.Add(sharedRedis.Release)
		mysqlErr = Migrate(ctx, bin, mysqlDB.DSN)
	})
	if mysqlErr != nil {
		tb.Fatal(mysqlErr)
	}
	return mysqlDB, sharedRedis
}

// getBackend starts (once) and seeds the named configuration.
func getBackend(tb testing.TB, name string) *backend {
	tb.Helper()
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if be := backends[name]; be != nil {
		return be
	}
	addr, err := FreeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	sc := ServerConfig{Binary: apiPerf(tb), Addr: addr}
	switch name {
	case mysqlRedis, mysqlRedisLimited:
		db, rdb := sharedMySQL(tb)
		sc.MySQLDSN, sc.RedisURL = db.DSN, rdb.URL
		if name == mysqlRedisLimited {
			sc.ReadLimit, sc.WriteLimit = HugeLimit, HugeLimit
		}
	case embedded:
		dir, err := os.MkdirTemp("", "api-perf-bench-data-")
		if err != nil {
			tb.Fatal(err)
		}
		teardown.Add(func() error { return os.RemoveAll(dir) })
		sc.DataDir = dir
	default:
		tb.Fatalf("unknown backend %q", name)
	}
	p, err := StartServer(context.Background(), name, sc)
	if err != nil {
		tb.Fatal(err)
	}
	teardown.Add(p.Stop)
	be := &backend{addr: addr, missingID: 1 << 40}
	ids, err := SeedProducts(addr, "bench-"+name, 40, 1_000_000_000)
	if err != nil {
		tb.Fatalf("seed %s: %v\n%s", name, err, p.Output())
	}
	be.hotID, be.contendedID, be.orderIDs = ids[0], ids[1], ids[2:]
	backends[name] = be
	return be
}

// request describes the i-th request of a benchmark loop.
type request func(i int, req *fasthttp.Request)

// drive sends b.N requests from 16 concurrent clients, each on its own
// keep-alive connection, and fails the benchmark on any response whose
// status is not want. It reports requests per second beside ns/op, which
// is wall time per request across all clients.
func drive(b *testing.B, addr string, want int, fill request) {
	b.Helper()
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 64, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	var (
		seq      atomic.Int64
		bad      atomic.Int64
		firstBad atomic.Value
	)
	b.SetParallelism(8) // 8 clients per GOMAXPROCS: 16 on two cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.Reset()
			fill(int(seq.Add(1)), req)
			err := hc.Do(req, resp)
			if err != nil || resp.StatusCode() != want {
				if bad.Add(1) == 1 {
					firstBad.Store(fmt.Sprintf("%s %s: status %d, error %v, body %.200s",
						req.Header.Method(), req.URI().Path(), resp.StatusCode(), err, resp.Body()))
				}
			}
		}
	})
	b.StopTimer()
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "req/s")
	}
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed; first: %v", n, b.N, firstBad.Load())
	}
}

func get(addr, path string) request {
	uri := "http://" + addr + path
	return func(_ int, req *fasthttp.Request) { req.SetRequestURI(uri) }
}

func postOrder(addr string, ids []int64) request {
	uri := "http://" + addr + "/orders"
	bodies := make([][]byte, len(ids))
	for i, id := range ids {
		bodies[i] = []byte(`{"product_id":` + strconv.FormatInt(id, 10) + `,"quantity":1}`)
	}
	return func(i int, req *fasthttp.Request) {
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI(uri)
		req.Header.SetContentType(ContentTypeJSON)
		req.SetBodyRaw(bodies[i%len(bodies)])
	}
}

var storeBackends = []string{mysqlRedis, embedded}

// BenchmarkProductByID is the hot route: a warm cached body, and an
// unknown id (negatively cached).
func BenchmarkProductByID(b *testing.B) {
	for _, name := range storeBackends {
		b.Run(name+"/warm", func(b *testing.B) {
			be := getBackend(b, name)
			drive(b, be.addr, fasthttp.StatusOK, get(be.addr, "/products/"+strconv.FormatInt(be.hotID, 10)))
		})
		b.Run(name+"/notfound", func(b *testing.B) {
			be := getBackend(b, name)
			drive(b, be.addr, fasthttp.StatusNotFound, get(be.addr, "/products/"+strconv.FormatInt(be.missingID, 10)))
		})
	}
}

// BenchmarkProductList reads the first page of 20 products.
func BenchmarkProductList(b *testing.B) {
	for _, name := range storeBackends {
		b.Run(name, func(b *testing.B) {
			be := getBackend(b, name)
			drive(b, be.addr, fasthttp.StatusOK, get(be.addr, "/products?limit=20"))
		})
	}
}

// BenchmarkOrderCreate spreads orders over many products, so it measures
// the transaction rather than one row's lock.
func BenchmarkOrderCreate(b *testing.B) {
	for _, name := range storeBackends {
		b.Run(name, func(b *testing.B) {
			be := getBackend(b, name)
			drive(b, be.addr, fasthttp.StatusCreated, postOrder(be.addr, be.orderIDs))
		})
	}
}

// BenchmarkOrderCreateContended sends every order to one product: all
// transactions queue on that product's row lock.
func BenchmarkOrderCreateContended(b *testing.B) {
	for _, name := range storeBackends {
		b.Run(name, func(b *testing.B) {
			be := getBackend(b, name)
			drive(b, be.addr, fasthttp.StatusCreated, postOrder(be.addr, []int64{be.contendedID}))
		})
	}
}

// BenchmarkLimiter is the warm read with the Redis rate limiter off and on
// (a policy that never refuses, so only its cost shows).
func BenchmarkLimiter(b *testing.B) {
	for _, c := range []struct{ name, backend string }{{"off", mysqlRedis}, {"on", mysqlRedisLimited}} {
		b.Run(c.name, func(b *testing.B) {
			be := getBackend(b, c.backend)
			drive(b, be.addr, fasthttp.StatusOK, get(be.addr, "/products/"+strconv.FormatInt(be.hotID, 10)))
		})
	}
}
