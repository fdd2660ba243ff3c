package apiperf

import (
	"context"
	"crypto/sha256"
	"strconv"
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

// Digest identifies an order request by its parsed fields, so that the
// same product and quantity are one request however the body was written.
// An idempotency key is tied to it (IdempotencyKey.RequestHash), and stored
// records hold it, so its form must not change.
func (in OrderInput) Digest() [32]byte {
	var b [48]byte
	h := strconv.AppendInt(b[:0], in.ProductID, 10)
	h = append(h, ':')
	h = strconv.AppendInt(h, in.Quantity, 10)
	return sha256.Sum256(h)
}

// OrderFilter narrows an order list; zero fields do not filter.
type OrderFilter struct {
	Status    OrderStatus
	ProductID int64
	Page
}

// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted, in bytes.
const MaxIdempotencyKeyLen = 255

// IdempotencyTTL is how long the response to a request with an
// Idempotency-Key is kept. Afterwards the key is free for a new request.
const IdempotencyTTL = 24 * time.Hour

// Scope names the client an idempotency key belongs to: a digest of its API
// key, or SharedScope when the API has no keys. Two clients that pick the
// same key never see each other's responses.
type Scope [32]byte

// SharedScope is the one scope of every client when writes need no API key.
var SharedScope Scope

// IdempotencyKey ties a request to a client's Idempotency-Key.
type IdempotencyKey struct {
	Scope Scope
	// Key is the client's key, compared byte for byte.
	Key string
	// RequestHash is a digest of the request; the same key with another
	// hash is an EMISMATCH.
	RequestHash [32]byte
}

// StoredResponse is the response remembered for an idempotency key.
type StoredResponse struct {
	Status int
	Body   []byte
}

// OrderPlacement is one order to place with PlaceOrders and, once the call
// returns, what became of it.
type OrderPlacement struct {
	In OrderInput
	// Key, when set, makes the placement idempotent: its response is
	// stored with the key in the order's own transaction, and a request
	// that finds the key already answered gets that answer instead.
	Key *IdempotencyKey
	// Respond renders the response stored with Key for a created order
	// (err nil) or a definitive refusal (o nil). It is called inside the
	// transaction, only when Key is set, and must not block.
	Respond func(o *Order, err error) StoredResponse

	// Order is the order this call created.
	Order *Order
	// Err says why no order was created. ENOTFOUND, ECONFLICT and EINVALID
	// are final (and stored with Key); EUNAVAILABLE and EINPROGRESS mean
	// nothing is known to be stored and the request may be retried.
	Err error
	// Stored is the response stored with Key: the one this call stored
	// along with Order or Err, or, when Replayed, an earlier request's.
	Stored *StoredResponse
	// Replayed reports that Stored is an earlier request's response.
	Replayed bool
	// StockMayHaveChanged reports that the call may have committed a stock
	// change (certainly, or without being able to tell), so cached copies
	// of the product must be dropped even when Err is set.
	StockMayHaveChanged bool
	// Invalidated reports that the store dropped the cached copies of the
	// product itself, after the change, so the caller need not.
	Invalidated bool
}

// OrderStore keeps orders. Every method that moves stock does so in the same
// transaction as the order change, so stock never goes below zero and every
// unit sold belongs to exactly one order.
type OrderStore interface {
	// PlaceOrders reserves stock and inserts pending orders, all in one
	// transaction, and records each outcome in its OrderPlacement. Each
	// order is decided on its own: ENOTFOUND for an unknown product,
	// ECONFLICT when stock is short, EINVALID when the total exceeds
	// MaxTotal. The response of a placement with a Key commits with the
	// order, or is not stored at all; when the commit's outcome cannot be
	// learned, the placement's Err is EUNAVAILABLE and a retry with the
	// same key gets the truth.
	PlaceOrders(ctx context.Context, batch []*OrderPlacement)
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

// PlaceOrder places one order without an idempotency key and returns it,
// or why it was not placed.
func PlaceOrder(ctx context.Context, s OrderStore, in OrderInput) (*Order, error) {
	p := &OrderPlacement{In: in}
	s.PlaceOrders(ctx, []*OrderPlacement{p})
	return p.Order, p.Err
}

// Pinger reports whether a dependency is reachable and ready.
type Pinger interface {
	Ping(ctx context.Context) error
}
