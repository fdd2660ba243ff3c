package apiperf

import (
	"context"
	"time"
)

// OrderStatus is where an order is in its life.
type OrderStatus string

// The order statuses. An order starts pending.
const (
	StatusPending   OrderStatus = "pending"
	StatusPaid      OrderStatus = "paid"
	StatusShipped   OrderStatus = "shipped"
	StatusDelivered OrderStatus = "delivered"
	StatusCancelled OrderStatus = "cancelled"
)

// Valid reports whether s is one of the known statuses.
func (s OrderStatus) Valid() bool {
	switch s {
	case StatusPending, StatusPaid, StatusShipped, StatusDelivered, StatusCancelled:
		return true
	}
	return false
}

// CanBecome reports whether an order may move from s to next:
// pending → paid → shipped → delivered, and pending or paid → cancelled.
func (s OrderStatus) CanBecome(next OrderStatus) bool {
	switch s {
	case StatusPending:
		return next == StatusPaid || next == StatusCancelled
	case StatusPaid:
		return next == StatusShipped || next == StatusCancelled
	case StatusShipped:
		return next == StatusDelivered
	}
	return false
}

// HoldsStock reports whether an order in status s still holds the units it
// reserved, so cancelling or deleting it must return them to the product.
func (s OrderStatus) HoldsStock() bool { return s == StatusPending || s == StatusPaid }

// Order is a purchase of Quantity units of one product at the price the
// product had when the order was placed.
type Order struct {
	ID        int64       `json:"id"`
	ProductID int64       `json:"product_id"`
	Quantity  int64       `json:"quantity"`
	UnitPrice Money       `json:"unit_price"`
	Total     Money       `json:"total"`
	Status    OrderStatus `json:"status"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// OrderInput is a validated new order.
type OrderInput struct {
	ProductID int64
	Quantity  int64
}

// OrderFilter narrows an order list; zero fields do not filter.
type OrderFilter struct {
	Status    OrderStatus
	ProductID int64
	Page
}

// OrderStore keeps orders. Every method that moves stock does so in the same
// transaction as the order change, so stock never goes below zero and every
// unit sold belongs to exactly one order.
type OrderStore interface {
	// CreateOrder reserves stock and inserts a pending order in one
	// transaction: ENOTFOUND for an unknown product, ECONFLICT when stock is
	// short. A non-empty idempotencyKey is stored on the order and unique.
	CreateOrder(ctx context.Context, in OrderInput, idempotencyKey string) (*Order, error)
	// Order returns one order or ENOTFOUND.
	Order(ctx context.Context, id int64) (*Order, error)
	// Orders lists orders by id after f.After.
	Orders(ctx context.Context, f OrderFilter) ([]Order, error)
	// SetOrderStatus moves an order to status; ECONFLICT for a transition
	// CanBecome refuses. Cancelling returns held stock in the same transaction.
	SetOrderStatus(ctx context.Context, id int64, status OrderStatus) (*Order, error)
	// DeleteOrder removes an order, returning held stock in the same transaction.
	DeleteOrder(ctx context.Context, id int64) (*Order, error)
}

// StoredResponse is the response remembered for an idempotency key.
type StoredResponse struct {
	Status int
	Body   []byte
}

// IdempotencyStore remembers the outcome of requests sent with an
// Idempotency-Key, so a retry gets the first response instead of a second order.
type IdempotencyStore interface {
	// BeginIdempotent claims key for a request whose body hashes to
	// requestHash. It returns (nil, nil) when the caller now owns the key,
	// the stored response when the key already completed with the same hash,
	// EMISMATCH when the key was used with another body, and EINPROGRESS
	// while the first request is still running.
	BeginIdempotent(ctx context.Context, key string, requestHash []byte) (*StoredResponse, error)
	// CompleteIdempotent stores the response of the request that owns key.
	CompleteIdempotent(ctx context.Context, key string, resp StoredResponse) error
	// AbandonIdempotent releases key after a failure that a retry may fix.
	AbandonIdempotent(ctx context.Context, key string) error
}

// Pinger reports whether a dependency is reachable and ready.
type Pinger interface {
	Ping(ctx context.Context) error
}
