package server_test

import (
	"context"
	"sync"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// fakeStore keeps products and orders in memory. It stands in for the
// database only in benchmarks and allocation tests, which measure the
// server's own overhead; every behaviour of the real stores is tested
// against MariaDB and SQLite.
type fakeStore struct {
	mu       sync.Mutex
	products map[int64]*apiperf.Product
	orders   map[int64]*apiperf.Order
	nextID   int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{products: map[int64]*apiperf.Product{}, orders: map[int64]*apiperf.Order{}}
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (m *fakeStore) CreateProduct(_ context.Context, in apiperf.ProductInput) (*apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	p := &apiperf.Product{ID: m.nextID, Name: in.Name, Description: in.Description, Price: in.Price,
		Stock: in.Stock, Version: 1, CreatedAt: epoch, UpdatedAt: epoch}
	m.products[p.ID] = p
	c := *p
	return &c, nil
}

func (m *fakeStore) Product(_ context.Context, id int64) (*apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.products[id]
	if !ok {
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "product %d does not exist", id)
	}
	c := *p
	return &c, nil
}

func (m *fakeStore) Products(_ context.Context, page apiperf.Page) ([]apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []apiperf.Product
	for id := page.After + 1; id <= m.nextID && len(out) < page.Limit; id++ {
		if p, ok := m.products[id]; ok {
			out = append(out, *p)
		}
	}
	return out, nil
}

func (m *fakeStore) ReplaceProduct(_ context.Context, id int64, in apiperf.ProductInput, v int64) (*apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.products[id]
	if !ok {
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "no product")
	}
	if v != 0 && v != p.Version {
		return nil, apiperf.Errorf(apiperf.EPRECONDITION, "changed")
	}
	p.Name, p.Description, p.Price, p.Stock = in.Name, in.Description, in.Price, in.Stock
	p.Version++
	c := *p
	return &c, nil
}

func (m *fakeStore) DeleteProduct(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.products, id)
	return nil
}

func (m *fakeStore) CreateOrder(_ context.Context, in apiperf.OrderInput, _ string) (*apiperf.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.products[in.ProductID]
	if !ok {
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "no product")
	}
	if p.Stock < in.Quantity {
		return nil, apiperf.Errorf(apiperf.ECONFLICT, "short")
	}
	p.Stock -= in.Quantity
	m.nextID++
	o := &apiperf.Order{ID: m.nextID, ProductID: p.ID, Quantity: in.Quantity, UnitPrice: p.Price,
		Total: p.Price * apiperf.Money(in.Quantity), Status: apiperf.StatusPending, CreatedAt: epoch, UpdatedAt: epoch}
	m.orders[o.ID] = o
	c := *o
	return &c, nil
}

func (m *fakeStore) Order(_ context.Context, id int64) (*apiperf.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.orders[id]
	if !ok {
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "no order")
	}
	c := *o
	return &c, nil
}

func (m *fakeStore) Orders(context.Context, apiperf.OrderFilter) ([]apiperf.Order, error) {
	return nil, nil
}

func (m *fakeStore) SetOrderStatus(context.Context, int64, apiperf.OrderStatus) (*apiperf.Order, error) {
	return nil, apiperf.Errorf(apiperf.ECONFLICT, "not supported")
}

func (m *fakeStore) DeleteOrder(context.Context, int64) (*apiperf.Order, error) {
	return nil, apiperf.Errorf(apiperf.ENOTFOUND, "not supported")
}

// hitCache is a BodyCache over a map, so a benchmark of the hit path
// measures the handler, not a cache implementation.
type hitCache struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func (c *hitCache) Get(ctx context.Context, key string, load func(context.Context, string) ([]byte, error)) ([]byte, error) {
	c.mu.RLock()
	v, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	v, err := load(ctx, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[key] = v
	c.mu.Unlock()
	return v, nil
}

func (c *hitCache) Invalidate(_ context.Context, keys ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.m, k)
	}
	return nil
}
