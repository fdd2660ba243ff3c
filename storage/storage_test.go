package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/storage"
)

// MustOpenDB opens a migrated store on a fresh database of the given backend.
func MustOpenDB(tb testing.TB, backend string) *storage.DB {
	tb.Helper()
	db, err := storage.Open(context.Background(), configFor(tb, backend))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func configFor(tb testing.TB, backend string) storage.Config {
	tb.Helper()
	switch backend {
	case "mysql":
		return storage.Config{MySQLDSN: testenv.MySQLDSN(tb), MaxOpenConns: 32}
	case "sqlite":
		return storage.Config{DataDir: tb.TempDir()}
	}
	tb.Fatalf("unknown backend %q", backend)
	return storage.Config{}
}

func eachBackend(t *testing.T, fn func(t *testing.T, db *storage.DB)) {
	for _, b := range testenv.Backends() {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, MustOpenDB(t, b))
		})
	}
}

func mustProduct(t testing.TB, db *storage.DB, price apiperf.Money, stock int64) *apiperf.Product {
	t.Helper()
	p, err := db.CreateProduct(context.Background(), apiperf.ProductInput{Name: "Test Product", Price: price, Stock: stock})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := apiperf.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func TestProductStore_CRUD(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		desc := "a thing"
		p, err := db.CreateProduct(ctx, apiperf.ProductInput{Name: "Widget", Description: &desc, Price: 9999, Stock: 5})
		if err != nil {
			t.Fatal(err)
		}
		if p.ID == 0 || p.Price != 9999 || p.Version != 1 || p.CreatedAt.IsZero() || *p.Description != desc {
			t.Fatalf("created %+v", p)
		}
		got, err := db.Product(ctx, p.ID)
		if err != nil || got.Price.String() != "99.99" || got.Name != "Widget" {
			t.Fatalf("Product = %+v, %v", got, err)
		}
		t.Run("ReplaceWithVersion", func(t *testing.T) {
			up, err := db.UpdateProduct(ctx, p.ID, apiperf.ProductInput{Name: "Widget 2", Price: 1, Stock: 7}.Replacement(), p.Version)
			if err != nil || up.Version != 2 || up.Description != nil || up.Stock != 7 || up.Name != "Widget 2" || up.Price != 1 {
				t.Fatalf("Replace = %+v, %v", up, err)
			}
			_, err = db.UpdateProduct(ctx, p.ID, apiperf.ProductInput{Name: "stale", Stock: 7}.Replacement(), p.Version)
			wantCode(t, err, apiperf.EPRECONDITION)
		})
		t.Run("NotFound", func(t *testing.T) {
			_, err := db.Product(ctx, 1<<40)
			wantCode(t, err, apiperf.ENOTFOUND)
			_, err = db.UpdateProduct(ctx, 1<<40, apiperf.ProductInput{Name: "x"}.Replacement(), 0)
			wantCode(t, err, apiperf.ENOTFOUND)
			_, err = db.UpdateProduct(ctx, 1<<40, apiperf.ProductPatch{}, 3)
			wantCode(t, err, apiperf.ENOTFOUND)
			wantCode(t, db.DeleteProduct(ctx, 1<<40), apiperf.ENOTFOUND)
		})
		t.Run("DeleteReferenced", func(t *testing.T) {
			q := mustProduct(t, db, 100, 3)
			if _, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: q.ID, Quantity: 1}); err != nil {
				t.Fatal(err)
			}
			wantCode(t, db.DeleteProduct(ctx, q.ID), apiperf.ECONFLICT)
		})
		if err := db.DeleteProduct(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		_, err = db.Product(ctx, p.ID)
		wantCode(t, err, apiperf.ENOTFOUND)
	})
}

func TestProductStore_Products(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		for i := 0; i < 5; i++ {
			mustProduct(t, db, apiperf.Money(i), 0)
		}
		var seen []int64
		page := apiperf.Page{Limit: 2}
		for {
			items, err := db.Products(context.Background(), page)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) == 0 {
				break
			}
			for _, it := range items {
				seen = append(seen, it.ID)
			}
			page.After = items[len(items)-1].ID
		}
		if len(seen) != 5 {
			t.Fatalf("paged through %v, want 5 ids", seen)
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] <= seen[i-1] {
				t.Fatalf("ids out of order: %v", seen)
			}
		}
	})
}

func TestOrderStore_Create(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p := mustProduct(t, db, 9999, 10)
		o, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: p.ID, Quantity: 3})
		if err != nil {
			t.Fatal(err)
		}
		if o.UnitPrice != 9999 || o.Total != 29997 || o.Status != apiperf.StatusPending {
			t.Fatalf("order %+v", o)
		}
		if got, _ := db.Product(ctx, p.ID); got.Stock != 7 || got.Version != 2 {
			t.Fatalf("after order: stock %d version %d, want 7 and 2", got.Stock, got.Version)
		}
		t.Run("InsufficientStock", func(t *testing.T) {
			_, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: p.ID, Quantity: 8})
			wantCode(t, err, apiperf.ECONFLICT)
		})
		t.Run("UnknownProduct", func(t *testing.T) {
			_, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: 1 << 40, Quantity: 1})
			wantCode(t, err, apiperf.ENOTFOUND)
		})
		t.Run("LargeTotalIsExact", func(t *testing.T) {
			big := mustProduct(t, db, apiperf.MaxPrice, apiperf.MaxQuantity)
			o, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: big.ID, Quantity: 99})
			if err != nil {
				t.Fatal(err)
			}
			if o.Total != apiperf.MaxPrice*99 {
				t.Fatalf("total %s, want %s", o.Total, apiperf.MaxPrice*99)
			}
		})
	})
}

// TestOrderStore_Oversell is the stock invariant under contention: 400
// concurrent single-unit orders against 50 units.
func TestOrderStore_Oversell(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		products := []*apiperf.Product{mustProduct(t, db, 100, 50), mustProduct(t, db, 100, 20), mustProduct(t, db, 100, 5)}
		var wg sync.WaitGroup
		var ok, conflict [3]atomic.Int64
		var other atomic.Int64
		for i := 0; i < 400; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				k := [4]int{0, 1, 0, 2}[i%4] // 200, 100 and 100 requests
				_, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: products[k].ID, Quantity: 1})
				switch apiperf.ErrorCode(err) {
				case "":
					ok[k].Add(1)
				case apiperf.ECONFLICT:
					conflict[k].Add(1)
				default:
					other.Add(1)
					t.Errorf("order: %v", err)
				}
			}(i)
		}
		wg.Wait()
		if other.Load() != 0 {
			t.Fatalf("%d unexpected errors", other.Load())
		}
		for k, p := range products {
			got, err := db.Product(ctx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if ok[k].Load() != p.Stock || got.Stock != 0 {
				t.Errorf("product %d: %d orders for %d units, stock left %d", k, ok[k].Load(), p.Stock, got.Stock)
			}
			orders, err := db.Orders(ctx, apiperf.OrderFilter{ProductID: p.ID, Page: apiperf.Page{Limit: 1000}})
			if err != nil || int64(len(orders)) != p.Stock {
				t.Errorf("product %d: %d order rows (%v), want %d", k, len(orders), err, p.Stock)
			}
		}
		t.Logf("created %d/%d/%d, conflicts %d/%d/%d", ok[0].Load(), ok[1].Load(), ok[2].Load(),
			conflict[0].Load(), conflict[1].Load(), conflict[2].Load())
	})
}

func TestOrderStore_SetOrderStatus(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p := mustProduct(t, db, 100, 10)
		order := func() *apiperf.Order {
			o, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: p.ID, Quantity: 2})
			if err != nil {
				t.Fatal(err)
			}
			return o
		}
		stock := func() int64 {
			got, err := db.Product(ctx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.Stock
		}
		o := order()
		for _, s := range []apiperf.OrderStatus{apiperf.StatusPaid, apiperf.StatusShipped, apiperf.StatusDelivered} {
			if _, err := db.SetOrderStatus(ctx, o.ID, s); err != nil {
				t.Fatalf("-> %s: %v", s, err)
			}
		}
		_, err := db.SetOrderStatus(ctx, o.ID, apiperf.StatusCancelled)
		wantCode(t, err, apiperf.ECONFLICT)
		if stock() != 8 {
			t.Fatalf("stock %d after a delivered order, want 8", stock())
		}
		c := order()
		if _, err := db.SetOrderStatus(ctx, c.ID, apiperf.StatusCancelled); err != nil {
			t.Fatal(err)
		}
		if stock() != 8 {
			t.Fatalf("cancel did not return stock: %d", stock())
		}
		d := order()
		if _, err := db.DeleteOrder(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
		if stock() != 8 {
			t.Fatalf("delete did not return stock: %d", stock())
		}
		_, err = db.DeleteOrder(ctx, d.ID)
		wantCode(t, err, apiperf.ENOTFOUND)
		_, err = db.SetOrderStatus(ctx, 1<<40, apiperf.StatusPaid)
		wantCode(t, err, apiperf.ENOTFOUND)
	})
}

// TestOrderStore_ReturnedStockPastTheColumn cancels and deletes orders of
// a product whose stock is so high that returning their units passes the
// largest value an INT UNSIGNED column holds, as MySQL's stock column was
// before migration 4. Clients reach that state through the API alone:
// MaxStock bounds the stock a write sets, not the stock orders give back,
// so each round of "order 1 000 000 units of a free product, set its stock
// back to 1 000 000 000 under If-Match" adds a million held units, and
// after 3 295 rounds cancelling the orders passed 4 294 967 295 (MySQL
// refused the UPDATE with error 1264, and the cancel or delete was a 500).
// The test writes the stock directly to skip the rounds. Every unit must
// come back, and read back exactly.
func TestOrderStore_ReturnedStockPastTheColumn(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p := mustProduct(t, db, 0, apiperf.MaxStock)
		var held []*apiperf.Order
		for range 2 {
			o, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: p.ID, Quantity: apiperf.MaxQuantity})
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, o)
		}
		const narrowMax = 1<<32 - 1
		if _, err := db.SQL().Exec("UPDATE products SET stock = ? WHERE id = ?", narrowMax-10, p.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SetOrderStatus(ctx, held[0].ID, apiperf.StatusCancelled); err != nil {
			t.Errorf("cancel: %v", err)
		}
		if _, err := db.DeleteOrder(ctx, held[1].ID); err != nil {
			t.Errorf("delete: %v", err)
		}
		got, err := db.Product(ctx, p.ID)
		if want := int64(narrowMax - 10 + 2*apiperf.MaxQuantity); err != nil || got.Stock != want {
			t.Fatalf("stock after returning both orders: %+v, %v; want %d", got, err, want)
		}
	})
}

// TestProductStore_VersionPastTheColumn writes a product whose version is
// at the top of a signed INT column, as MySQL's version column was before
// migration 4. Every order and every product write adds one to the
// version, so a popular product reaches it after 2 147 483 647 of them
// (25 days at a thousand orders a second); then every order for it and
// every write to it failed with MySQL error 1264, a 500. Both must go on,
// and the version read back past the old limit.
func TestProductStore_VersionPastTheColumn(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		p := mustProduct(t, db, 100, 10)
		const narrowMax = 1<<31 - 1
		if _, err := db.SQL().Exec("UPDATE products SET version = ? WHERE id = ?", narrowMax, p.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: p.ID, Quantity: 1}); err != nil {
			t.Errorf("order: %v", err)
		}
		price := apiperf.Money(200)
		got, err := db.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{Price: &price}, narrowMax+1)
		if err != nil || got.Version != narrowMax+2 {
			t.Fatalf("write under If-Match on version %d: %+v, %v; want version %d", int64(narrowMax+1), got, err, int64(narrowMax+2))
		}
	})
}

// migrations is how many migrations each dialect has.
const migrations = 5

// TestMigrate_Concurrent starts five pools at once on one new database; the
// migrations must apply exactly once.
func TestMigrate_Concurrent(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			cfg := configFor(t, backend)
			var wg sync.WaitGroup
			errs := make(chan error, 5)
			for i := 0; i < 5; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db, err := storage.Open(context.Background(), cfg)
					if err == nil {
						err = db.Ping(context.Background())
						db.Close()
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			db := mustOpenConfig(t, cfg)
			var version, rows int
			var dirty bool
			if err := db.SQL().QueryRow("SELECT MAX(version), MAX(dirty), COUNT(*) FROM schema_version").Scan(&version, &dirty, &rows); err != nil ||
				version != migrations || dirty || rows != 1 {
				t.Fatalf("schema_version holds version %d dirty=%v in %d rows (%v), want version %d, clean, in one row", version, dirty, rows, err, migrations)
			}
		})
	}
}

func mustOpenConfig(tb testing.TB, cfg storage.Config) *storage.DB {
	tb.Helper()
	db, err := storage.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestOpen_Unreachable(t *testing.T) {
	_, err := storage.Open(context.Background(), storage.Config{MySQLDSN: "root@tcp(127.0.0.1:1)/x"})
	wantCode(t, err, apiperf.EUNAVAILABLE)
	_, err = storage.Open(context.Background(), storage.Config{MySQLDSN: "not a dsn"})
	if err == nil {
		t.Fatal("bad DSN accepted")
	}
}

// TestOpen_DataDir: a data directory that cannot be created is a
// ConfigError naming Config.DataDir.
func TestOpen_DataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(context.Background(), storage.Config{DataDir: filepath.Join(file, "data")})
	if err == nil {
		db.Close()
	}
	var ce *storage.ConfigError
	if !errors.As(err, &ce) || ce.Field != "DataDir" || !strings.Contains(err.Error(), "Config.DataDir: cannot create it: ") {
		t.Fatalf("Open under a file: %v, want a ConfigError for DataDir", err)
	}
	_, err = storage.Open(context.Background(), storage.Config{MySQLDSN: "u@tcp(p:3306/db"})
	if !errors.As(err, &ce) || ce.Field != "MySQLDSN" {
		t.Fatalf("Open with a malformed DSN: %v, want a ConfigError for MySQLDSN", err)
	}
}

// TestOpen_MetricConflict: a collector of another shape under one of the
// store's metric names is Open's error, and the same store twice on one
// registry shares the series.
func TestOpen_MetricConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		db, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir(), Registerer: reg})
		if err != nil {
			t.Fatalf("the same store twice on one registry: %v", err)
		}
		db.Close()
	}
	reg = prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiperf_db_reads_total", Help: "another"}))
	if db, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir(), Registerer: reg}); err == nil {
		db.Close()
		t.Fatal("Open accepted a conflicting apiperf_db_reads_total")
	}
}

// TestSQLite_Synchronous checks the durability setting reaches every
// connection: FULL (2) unless NORMAL (1) is asked for.
func TestSQLite_Synchronous(t *testing.T) {
	for setting, want := range map[string]int{"": 2, "full": 2, "normal": 1} {
		db, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir(), SQLiteSynchronous: setting})
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := db.SQL().QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if got != want {
			t.Errorf("SQLiteSynchronous %q: PRAGMA synchronous = %d, want %d", setting, got, want)
		}
	}
}

// TestOpen_DataDirOfURICharacters: a data directory whose name holds '?',
// '#' or '%' is where the database is, with its settings. The path went
// into the driver's file: URI unescaped, so "a?b" opened a file "a" beside
// it without busy_timeout, "a#b" a file "a", and "a%20b" failed.
func TestOpen_DataDirOfURICharacters(t *testing.T) {
	for _, name := range []string{"a?b", "a#b", "a%20b", "a?x=1&b#c%"} {
		dir := filepath.Join(t.TempDir(), name)
		db, err := storage.Open(context.Background(), storage.Config{DataDir: dir})
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		if want := filepath.Join(dir, "api-perf.db"); db.Path != want {
			t.Errorf("%q: Path %s, want %s", name, db.Path, want)
		}
		if _, err := os.Stat(db.Path); err != nil {
			t.Errorf("%q: the database is not in the directory: %v", name, err)
		}
		var busy, fk int
		if err := db.SQL().QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil || busy != 10000 {
			t.Errorf("%q: busy_timeout %d (%v), want 10000", name, busy, err)
		}
		if err := db.SQL().QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
			t.Errorf("%q: foreign_keys %d (%v), want 1", name, fk, err)
		}
		db.Close()
	}
}
