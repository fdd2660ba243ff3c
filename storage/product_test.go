package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/storage"
)

func ptr[T any](v T) *T { return &v }

func TestProductStore_UpdateProduct(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		desc := "lamp"
		p, err := db.CreateProduct(ctx, apiperf.ProductInput{Name: "Lamp", Description: &desc, Price: 1000, Stock: 5})
		if err != nil {
			t.Fatal(err)
		}
		t.Run("PatchLeavesOtherFields", func(t *testing.T) {
			up, err := db.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{Price: ptr(apiperf.Money(1250))}, 0)
			if err != nil || up.Price != 1250 || up.Name != "Lamp" || *up.Description != "lamp" || up.Stock != 5 || up.Version != p.Version+1 {
				t.Fatalf("patch price: %+v, %v", up, err)
			}
			up, err = db.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{ClearDescription: true, Name: ptr("Lamp 2")}, 0)
			if err != nil || up.Description != nil || up.Name != "Lamp 2" || up.Price != 1250 {
				t.Fatalf("patch name, clear description: %+v, %v", up, err)
			}
		})
		t.Run("StockWithoutIfMatch", func(t *testing.T) {
			up, err := db.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{Stock: ptr(int64(5)), Name: ptr("Lamp 3")}, 0)
			if err != nil || up.Stock != 5 || up.Name != "Lamp 3" {
				t.Fatalf("restating the stock needs no precondition: %+v, %v", up, err)
			}
			_, err = db.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{Stock: ptr(int64(100)), Name: ptr("Lamp 4")}, 0)
			wantCode(t, err, apiperf.EPRECONDREQUIRED)
			var e *apiperf.Error
			if !errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Field != "stock" {
				t.Fatalf("428 without the stock field: %#v", err)
			}
			if got, _ := db.Product(ctx, p.ID); got.Stock != 5 || got.Name != "Lamp 3" {
				t.Fatalf("a refused write changed the product: %+v", got)
			}
		})
		t.Run("StockWithIfMatch", func(t *testing.T) {
			cur, _ := db.Product(ctx, p.ID)
			up, err := db.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{Stock: ptr(int64(100))}, cur.Version)
			if err != nil || up.Stock != 100 {
				t.Fatalf("stock under If-Match: %+v, %v", up, err)
			}
			_, err = db.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{Stock: ptr(int64(7))}, cur.Version)
			wantCode(t, err, apiperf.EPRECONDITION)
		})
	})
}

// TestProductStore_UpdateProduct_RacesOrders is reproduction 7: product
// writes racing orders must never undo a decrement. Orders hammer one
// product while other writers patch its name and price (no stock) and
// restock it under a version guard; afterwards the stock plus every unit
// ordered equals the initial stock plus every restock that succeeded.
func TestProductStore_UpdateProduct_RacesOrders(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		const initial = 200
		p := mustProduct(t, db, 100, initial)
		var ordered, restocked atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 40; i++ {
					o, err := apiperf.PlaceOrder(ctx, db, apiperf.OrderInput{ProductID: p.ID, Quantity: 1})
					switch {
					case err == nil:
						ordered.Add(o.Quantity)
					case apiperf.ErrorCode(err) != apiperf.ECONFLICT:
						t.Errorf("order: %v", err)
						return
					}
				}
			}()
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				patch := apiperf.ProductPatch{Name: ptr(fmt.Sprintf("Renamed %d", i)), Price: ptr(apiperf.Money(100 + i))}
				if _, err := db.UpdateProduct(ctx, p.ID, patch, 0); err != nil {
					t.Errorf("patch without stock: %v", err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				cur, err := db.Product(ctx, p.ID)
				if err != nil {
					t.Error(err)
					return
				}
				_, err = db.UpdateProduct(ctx, p.ID, apiperf.ProductInput{Name: cur.Name, Price: cur.Price, Stock: cur.Stock + 3}.Replacement(), cur.Version)
				switch apiperf.ErrorCode(err) {
				case "":
					restocked.Add(3)
				case apiperf.EPRECONDITION: // an order came first; the client would read again
				default:
					t.Errorf("restock: %v", err)
					return
				}
				// A stale restatement without If-Match is refused, never written.
				_, err = db.UpdateProduct(ctx, p.ID, apiperf.ProductInput{Name: cur.Name, Price: cur.Price, Stock: cur.Stock}.Replacement(), 0)
				if c := apiperf.ErrorCode(err); c != "" && c != apiperf.EPRECONDREQUIRED {
					t.Errorf("restatement: %v", err)
					return
				}
			}
		}()
		wg.Wait()
		stock := stockOf(t, db, p.ID)
		if stock+ordered.Load() != initial+restocked.Load() {
			t.Fatalf("stock %d + ordered %d != initial %d + restocked %d", stock, ordered.Load(), initial, restocked.Load())
		}
		if ordered.Load() == 0 || restocked.Load() == 0 {
			t.Fatalf("the race did not happen: ordered %d, restocked %d", ordered.Load(), restocked.Load())
		}
		t.Logf("ordered %d, restocked %d, stock %d", ordered.Load(), restocked.Load(), stock)
	})
}

// TestDB_ReadErrorsNameTheCall: a failed read by id says which call and id
// it was, and keeps its code and message.
func TestDB_ReadErrorsNameTheCall(t *testing.T) {
	db := mustOpenConfig(t, storage.Config{DataDir: t.TempDir()})
	ctx := context.Background()
	_, err := db.Product(ctx, 7)
	wantCode(t, err, apiperf.ENOTFOUND)
	if got, want := err.Error(), "Product(7): not_found: product 7 does not exist"; got != want {
		t.Errorf("Product: %q, want %q", got, want)
	}
	if got := apiperf.ErrorMessage(err); got != "product 7 does not exist" {
		t.Errorf("Product's message %q", got)
	}
	db.Close()
	for name, read := range map[string]func() error{
		"Product(8): ": func() error { _, err := db.Product(ctx, 8); return err },
		"Order(9): ":   func() error { _, err := db.Order(ctx, 9); return err },
	} {
		err := read()
		wantCode(t, err, apiperf.EUNAVAILABLE)
		if err == nil || !strings.HasPrefix(err.Error(), name) {
			t.Errorf("a read on a closed store failed with %v, want it to begin %q", err, name)
		}
	}
}
