package server_test

import (
	"context"
	"sync"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/storage"
)

// faultyStore is the real store with a fault a test switches on: an error
// that product and order reads return instead of reading. Every other
// call, and every call while the fault is off, is the store's own.
type faultyStore struct {
	*storage.DB
	mu  sync.Mutex
	err error
}

var (
	_ apiperf.ProductStore = (*faultyStore)(nil)
	_ apiperf.OrderStore   = (*faultyStore)(nil)
)

// failReads makes later product and order reads return err; nil ends the
// fault.
func (f *faultyStore) failReads(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *faultyStore) readErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *faultyStore) Product(ctx context.Context, id int64) (*apiperf.Product, error) {
	if err := f.readErr(); err != nil {
		return nil, err
	}
	return f.DB.Product(ctx, id)
}

func (f *faultyStore) Orders(ctx context.Context, filter apiperf.OrderFilter) ([]apiperf.Order, error) {
	if err := f.readErr(); err != nil {
		return nil, err
	}
	return f.DB.Orders(ctx, filter)
}
