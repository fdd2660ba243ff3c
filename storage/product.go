package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	apiperf "github.com/api-perf/api-perf"
)

func errProductNotFound(id int64) error {
	return apiperf.Errorf(apiperf.ENOTFOUND, "product %d does not exist", id)
}

// CreateProduct inserts a product and reads it back, so the timestamps are
// the database's.
func (d *DB) CreateProduct(ctx context.Context, in apiperf.ProductInput) (p *apiperf.Product, err error) {
	defer apiperf.Wrap(&err, "CreateProduct")
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	p = new(apiperf.Product)
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, d.stmts.insertProduct).ExecContext(ctx,
			in.Name, nullString(in.Description), d.dialect.money(in.Price), in.Stock)
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		return scanProduct(tx.StmtContext(ctx, d.stmts.productByID).QueryRowContext(ctx, id), p)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Product returns one product, always read on the primary: it fills the
// cache and answers If-Match, so it must show every acknowledged write
// (docs/replicas.md says why this is not a replica read).
func (d *DB) Product(ctx context.Context, id int64) (_ *apiperf.Product, err error) {
	defer apiperf.Wrap(&err, "Product(%d)", id)
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	d.metrics.primaryByID.Inc()
	p := new(apiperf.Product)
	if err = scanProduct(d.stmts.productByID.QueryRowContext(ctx, id), p); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errProductNotFound(id)
		}
		return nil, mapError(err)
	}
	return p, nil
}

// Products returns one page of products in id order, from a replica
// within Config.MaxReplicaLag when there is one (see listRead).
func (d *DB) Products(ctx context.Context, page apiperf.Page) (out []apiperf.Product, err error) {
	defer apiperf.Wrap(&err, "Products")
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	err = d.listRead(ctx, func(ctx context.Context, st *listStatements) error {
		rows, err := st.productsAfter.QueryContext(ctx, page.After, page.Limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = make([]apiperf.Product, 0, page.Limit)
		for rows.Next() {
			out = append(out, apiperf.Product{})
			if err := scanProduct(rows, &out[len(out)-1]); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, mapError(err)
	}
	return out, nil
}

// UpdateProduct writes the fields patch sets in one statement, so columns
// the patch leaves alone, stock above all, are never written from a copy
// read earlier. Stock is written only under an ifVersion guard; without
// one, a patch's stock must equal the stored stock, checked by the same
// statement.
func (d *DB) UpdateProduct(ctx context.Context, id int64, patch apiperf.ProductPatch, ifVersion int64) (p *apiperf.Product, err error) {
	defer apiperf.Wrap(&err, "UpdateProduct(%d)", id)
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	var name, desc, price, stock any
	if patch.Name != nil {
		name = *patch.Name
	}
	if patch.Description != nil {
		desc = *patch.Description
	}
	if patch.Price != nil {
		price = d.dialect.money(*patch.Price)
	}
	if patch.Stock != nil {
		stock = *patch.Stock
	}
	writeStock := patch.Stock != nil && ifVersion != 0
	checkStock := patch.Stock != nil && ifVersion == 0
	p = new(apiperf.Product)
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, d.stmts.updateProduct).ExecContext(ctx,
			patch.Name != nil, name,
			patch.Description != nil || patch.ClearDescription, desc,
			patch.Price != nil, price,
			writeStock, stock,
			id, ifVersion, ifVersion, checkStock, stock)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var version, stored int64
			err := tx.StmtContext(ctx, d.stmts.productState).QueryRowContext(ctx, id).Scan(&version, &stored)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return errProductNotFound(id)
			case err != nil:
				return err
			case ifVersion != 0:
				return apiperf.Errorf(apiperf.EPRECONDITION, "product %d has changed since it was read", id)
			}
			return &apiperf.Error{Code: apiperf.EPRECONDREQUIRED,
				Message: fmt.Sprintf("product %d has %d units in stock, not %d: changing stock needs If-Match", id, stored, *patch.Stock),
				Fields:  []apiperf.FieldError{{Field: "stock", Message: "differs from the stored stock; send If-Match with the product's ETag to change it"}}}
		}
		return scanProduct(tx.StmtContext(ctx, d.stmts.productByID).QueryRowContext(ctx, id), p)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// DeleteProduct removes a product that no order references.
func (d *DB) DeleteProduct(ctx context.Context, id int64) (err error) {
	defer apiperf.Wrap(&err, "DeleteProduct(%d)", id)
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	res, err := d.exec(ctx, d.stmts.deleteProduct, id)
	if err != nil {
		err = mapError(err)
		if apiperf.ErrorCode(err) == apiperf.ECONFLICT {
			return &apiperf.Error{Code: apiperf.ECONFLICT, Message: "product is referenced by orders", Err: err}
		}
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return mapError(err)
	} else if n == 0 {
		return errProductNotFound(id)
	}
	return nil
}

func nullString(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
