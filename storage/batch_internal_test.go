package storage

import (
	"context"
	"testing"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
)

// TestBatch_WithoutConsecutiveIDs takes the path of a MySQL whose
// innodb_autoinc_lock_mode is 2 (or whose auto_increment_increment is not
// 1), where one INSERT's rows need not get consecutive ids: each order of a
// batch has its own INSERT, and each is told its own row's id.
func TestBatch_WithoutConsecutiveIDs(t *testing.T) {
	for _, backend := range testenv.Backends() {
		t.Run(backend, func(t *testing.T) {
			d := openInternal(t, backend)
			if !d.consecutiveIDs {
				t.Fatal("this server hands out consecutive ids; the test forces the other path")
			}
			d.consecutiveIDs = false
			p, err := d.CreateProduct(context.Background(), apiperf.ProductInput{Name: "p", Price: 100, Stock: 1000})
			if err != nil {
				t.Fatal(err)
			}
			var batch []*apiperf.OrderPlacement
			for i := range 30 {
				batch = append(batch, &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: p.ID, Quantity: int64(1 + i)}})
			}
			d.PlaceOrders(context.Background(), batch)
			for _, pl := range batch {
				if pl.Err != nil {
					t.Fatal(pl.Err)
				}
				o, err := d.Order(context.Background(), pl.Order.ID)
				if err != nil || o.Quantity != pl.In.Quantity {
					t.Fatalf("order %d is %+v, %v; want %d units", pl.Order.ID, o, err, pl.In.Quantity)
				}
			}
		})
	}
}
