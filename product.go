package apiperf

import (
	"context"
	"time"
)

// Product is an item for sale. Stock is the number of units not yet reserved
// by an order; Version increases on every change and guards optimistic updates.
type Product struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Description *string   `json:"description"`
	Price       Money     `json:"price"`
	Stock       int64     `json:"stock"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Limits on product fields, shared by validation and the schema.
const (
	MaxNameLen        = 200
	MaxDescriptionLen = 10_000
	MaxStock          = 1_000_000_000
	MaxQuantity       = 1_000_000
	// DefaultStock is the stock of a product created without one, so that
	// a product made with just a name and a price can be ordered at once.
	DefaultStock = 100
)

// ProductInput is a validated full representation for create and replace.
type ProductInput struct {
	Name        string
	Description *string
	Price       Money
	Stock       int64
}

// ProductPatch is a validated partial update; nil fields stay as they are.
// ClearDescription sets the description to null (a merge patch's "description": null).
type ProductPatch struct {
	Name             *string
	Description      *string
	ClearDescription bool
	Price            *Money
	Stock            *int64
}

// Replacement is the patch that makes a product equal to in: every field
// set, and the description cleared when in has none.
func (in ProductInput) Replacement() ProductPatch {
	p := ProductPatch{Name: &in.Name, Price: &in.Price, Stock: &in.Stock}
	if in.Description == nil {
		p.ClearDescription = true
	} else {
		p.Description = in.Description
	}
	return p
}

// Page asks for one page of a keyset-paginated list: the items after the
// id After, at most Limit of them.
type Page struct {
	After int64
	Limit int
}

// ProductStore keeps products.
type ProductStore interface {
	// CreateProduct inserts a product and returns it as stored.
	CreateProduct(ctx context.Context, in ProductInput) (*Product, error)
	// Product returns one product or an ENOTFOUND error.
	Product(ctx context.Context, id int64) (*Product, error)
	// Products returns up to page.Limit products ordered by id after page.After.
	Products(ctx context.Context, page Page) ([]Product, error)
	// UpdateProduct writes the fields patch sets and leaves the others
	// alone, so a write that does not mention stock cannot undo the orders
	// that moved it. With ifVersion not zero, the write happens only while
	// the stored version equals it (EPRECONDITION otherwise). Without it, a
	// patch may set Stock only to the stock stored at the time of the write
	// (the column is then left as it is); any other value is
	// EPRECONDREQUIRED, because an unconditional stock write would erase
	// the orders placed since the client read the product.
	UpdateProduct(ctx context.Context, id int64, patch ProductPatch, ifVersion int64) (*Product, error)
	// DeleteProduct removes a product; ECONFLICT while orders reference it.
	DeleteProduct(ctx context.Context, id int64) error
}
