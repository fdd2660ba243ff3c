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

// Apply returns p with the patch's fields applied.
func (pp ProductPatch) Apply(p ProductInput) ProductInput {
	if pp.Name != nil {
		p.Name = *pp.Name
	}
	if pp.ClearDescription {
		p.Description = nil
	} else if pp.Description != nil {
		p.Description = pp.Description
	}
	if pp.Price != nil {
		p.Price = *pp.Price
	}
	if pp.Stock != nil {
		p.Stock = *pp.Stock
	}
	return p
}

// Input returns the writable fields of p.
func (p *Product) Input() ProductInput {
	return ProductInput{Name: p.Name, Description: p.Description, Price: p.Price, Stock: p.Stock}
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
	// ReplaceProduct overwrites a product's fields. When ifVersion is not
	// zero, the write happens only if the stored version still equals it,
	// otherwise the result is EPRECONDITION.
	ReplaceProduct(ctx context.Context, id int64, in ProductInput, ifVersion int64) (*Product, error)
	// DeleteProduct removes a product; ECONFLICT while orders reference it.
	DeleteProduct(ctx context.Context, id int64) error
}
