package server_test

import (
	"context"
	"slices"
	"sync"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// memStore keeps products, orders and idempotency keys in memory with the
// domain's rules, so that the handlers can be driven end to end without a
// database; the storage package's own tests cover the SQL.
type memStore struct {
	mu       sync.Mutex
	products map[int64]*apiperf.Product
	orders   map[int64]*apiperf.Order
	keys     map[string]*idem
	nextID   int64
	// nextOrder numbers orders apart from products, as the tables do.
	nextOrder int64
	stock     int64
	err       error
}

type idem struct {
	hash [32]byte
	resp apiperf.StoredResponse
}

var (
	_ apiperf.ProductStore = (*memStore)(nil)
	_ apiperf.OrderStore   = (*memStore)(nil)
)

func newMemStore() *memStore {
	return &memStore{products: map[int64]*apiperf.Product{}, orders: map[int64]*apiperf.Order{}, keys: map[string]*idem{}}
}

// seed adds product 1 with stock and pending order 1.
func (m *memStore) seed() {
	ctx := context.Background()
	p, _ := m.CreateProduct(ctx, apiperf.ProductInput{Name: "seed", Price: 100, Stock: apiperf.MaxStock})
	if _, err := apiperf.PlaceOrder(ctx, m, apiperf.OrderInput{ProductID: p.ID, Quantity: 1}); err != nil {
		panic(err)
	}
}

// fail makes every later call return err.
func (m *memStore) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

func (m *memStore) lastStock() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stock
}

func (m *memStore) now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func (m *memStore) CreateProduct(_ context.Context, in apiperf.ProductInput) (*apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	m.nextID++
	m.stock = in.Stock
	p := &apiperf.Product{ID: m.nextID, Name: in.Name, Description: in.Description, Price: in.Price, Stock: in.Stock,
		Version: 1, CreatedAt: m.now(), UpdatedAt: m.now()}
	m.products[p.ID] = p
	c := *p
	return &c, nil
}

func (m *memStore) Product(_ context.Context, id int64) (*apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.product(id)
	if err != nil {
		return nil, err
	}
	c := *p
	return &c, nil
}

func (m *memStore) Products(_ context.Context, page apiperf.Page) ([]apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	out := []apiperf.Product{}
	for _, id := range sortedIDs(m.products) {
		if id > page.After && len(out) < page.Limit {
			out = append(out, *m.products[id])
		}
	}
	return out, nil
}

func (m *memStore) UpdateProduct(_ context.Context, id int64, patch apiperf.ProductPatch, ifVersion int64) (*apiperf.Product, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.product(id)
	if err != nil {
		return nil, err
	}
	if ifVersion != 0 && ifVersion != p.Version {
		return nil, apiperf.Errorf(apiperf.EPRECONDITION, "product %d has changed since it was read", id)
	}
	if ifVersion == 0 && patch.Stock != nil && *patch.Stock != p.Stock {
		return nil, apiperf.Errorf(apiperf.EPRECONDREQUIRED, "changing stock needs If-Match")
	}
	if patch.Name != nil {
		p.Name = *patch.Name
	}
	if patch.ClearDescription {
		p.Description = nil
	} else if patch.Description != nil {
		p.Description = patch.Description
	}
	if patch.Price != nil {
		p.Price = *patch.Price
	}
	if patch.Stock != nil {
		p.Stock = *patch.Stock
	}
	p.Version++
	p.UpdatedAt = m.now()
	c := *p
	return &c, nil
}

func (m *memStore) DeleteProduct(_ context.Context, id int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.product(id); err != nil {
		return err
	}
	for _, o := range m.orders {
		if o.ProductID == id {
			return apiperf.Errorf(apiperf.ECONFLICT, "product is referenced by orders")
		}
	}
	delete(m.products, id)
	return nil
}

func (m *memStore) PlaceOrders(_ context.Context, batch []*apiperf.OrderPlacement) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, pl := range batch {
		pl.Order, pl.Err, pl.Stored, pl.Replayed = nil, nil, nil, false
		if pl.Key != nil {
			if k, ok := m.keys[pl.Key.Key]; ok {
				if k.hash != pl.Key.RequestHash {
					pl.Err = apiperf.Errorf(apiperf.EMISMATCH, "Idempotency-Key was already used with a different request body")
				} else {
					pl.Stored, pl.Replayed = &k.resp, true
				}
				continue
			}
		}
		pl.Order, pl.Err = m.createOrder(pl.In)
		pl.StockMayHaveChanged = pl.Order != nil
		if pl.Key != nil && (pl.Err == nil || apiperf.ErrorCode(pl.Err) != apiperf.EUNAVAILABLE) {
			r := pl.Respond(pl.Order, pl.Err)
			m.keys[pl.Key.Key] = &idem{hash: pl.Key.RequestHash, resp: r}
			pl.Stored = &r
		}
	}
}

func (m *memStore) createOrder(in apiperf.OrderInput) (*apiperf.Order, error) {
	p, err := m.product(in.ProductID)
	if err != nil {
		return nil, err
	}
	if p.Stock < in.Quantity {
		return nil, apiperf.Errorf(apiperf.ECONFLICT, "product %d has fewer than %d units in stock", p.ID, in.Quantity)
	}
	p.Stock -= in.Quantity
	p.Version++
	m.nextOrder++
	o := &apiperf.Order{ID: m.nextOrder, ProductID: p.ID, Quantity: in.Quantity, UnitPrice: p.Price,
		Total: p.Price * apiperf.Money(in.Quantity), Status: apiperf.StatusPending, CreatedAt: m.now(), UpdatedAt: m.now()}
	m.orders[o.ID] = o
	c := *o
	return &c, nil
}

func (m *memStore) Order(_ context.Context, id int64) (*apiperf.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, err := m.order(id)
	if err != nil {
		return nil, err
	}
	c := *o
	return &c, nil
}

func (m *memStore) Orders(_ context.Context, f apiperf.OrderFilter) ([]apiperf.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	out := []apiperf.Order{}
	for _, id := range sortedIDs(m.orders) {
		o := m.orders[id]
		if id > f.After && len(out) < f.Limit && (f.Status == "" || o.Status == f.Status) &&
			(f.ProductID == 0 || o.ProductID == f.ProductID) {
			out = append(out, *o)
		}
	}
	return out, nil
}

func (m *memStore) SetOrderStatus(_ context.Context, id int64, status apiperf.OrderStatus) (*apiperf.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, err := m.order(id)
	if err != nil {
		return nil, err
	}
	if !o.Status.CanBecome(status) {
		return nil, apiperf.Errorf(apiperf.ECONFLICT, "order %d cannot go from %s to %s", id, o.Status, status)
	}
	if status == apiperf.StatusCancelled {
		m.products[o.ProductID].Stock += o.Quantity
	}
	o.Status = status
	o.UpdatedAt = m.now()
	c := *o
	return &c, nil
}

func (m *memStore) DeleteOrder(_ context.Context, id int64) (*apiperf.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, err := m.order(id)
	if err != nil {
		return nil, err
	}
	if p := m.products[o.ProductID]; p != nil && o.Status.HoldsStock() {
		p.Stock += o.Quantity
	}
	delete(m.orders, id)
	return o, nil
}

func sortedIDs[V any](m map[int64]V) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
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

// product is the stored product id, or the store's injected error, or
// ENOTFOUND. The caller holds m.mu.
func (m *memStore) product(id int64) (*apiperf.Product, error) {
	if m.err != nil {
		return nil, m.err
	}
	p, ok := m.products[id]
	if !ok {
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "product %d does not exist", id)
	}
	return p, nil
}

// order is product for orders.
func (m *memStore) order(id int64) (*apiperf.Order, error) {
	if m.err != nil {
		return nil, m.err
	}
	o, ok := m.orders[id]
	if !ok {
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "order %d does not exist", id)
	}
	return o, nil
}
