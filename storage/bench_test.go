package storage_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	apiperf "github.com/api-perf/api-perf"
)

// BenchmarkDB_PlaceOrders measures the write path of POST /orders on each
// backend: one transaction per order, with and without an idempotency key,
// spread over a few products so that the row locks are contended as under
// real load.
//
//	go test -run '^$' -bench PlaceOrders -benchmem ./storage/
func BenchmarkDB_PlaceOrders(b *testing.B) {
	for _, backend := range []string{"sqlite", "mysql"} {
		for _, withKey := range []bool{false, true} {
			name := backend + "/unkeyed"
			if withKey {
				name = backend + "/keyed"
			}
			b.Run(name, func(b *testing.B) {
				db := MustOpenDB(b, backend)
				var ids [4]int64
				for i := range ids {
					ids[i] = mustProduct(b, db, 1999, apiperf.MaxStock).ID
				}
				var n atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := n.Add(1)
						p := &apiperf.OrderPlacement{In: apiperf.OrderInput{ProductID: ids[i%4], Quantity: 1}}
						if withKey {
							p = keyed(1, "bench-"+strconv.FormatInt(i, 10), p.In)
						}
						db.PlaceOrders(context.Background(), []*apiperf.OrderPlacement{p})
						if p.Err != nil || p.Order == nil {
							b.Fatalf("placement: %v", p.Err)
						}
					}
				})
			})
		}
	}
}
