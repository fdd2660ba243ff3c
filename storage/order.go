package storage

import (
	"context"
	"database/sql"
	"errors"

	apiperf "github.com/api-perf/api-perf"
)

func errOrderNotFound(id int64) error {
	return apiperf.Errorf(apiperf.ENOTFOUND, "order %d does not exist", id)
}

// CreateOrder reserves stock with a conditional UPDATE and inserts the order
// in the same transaction. The UPDATE takes the product row's lock, so
// concurrent orders for one product queue on it and the stock >= quantity
// check can never be passed by two of them with the same units.
func (d *DB) CreateOrder(ctx context.Context, in apiperf.OrderInput, key string) (o *apiperf.Order, err error) {
	defer apiperf.Wrap(&err, "CreateOrder(product=%d)", in.ProductID)
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	var id int64
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, d.stmts.reserveStock).ExecContext(ctx, in.Quantity, in.ProductID, in.Quantity)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var one int
			err := tx.StmtContext(ctx, d.stmts.productExists).QueryRowContext(ctx, in.ProductID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return errProductNotFound(in.ProductID)
			} else if err != nil {
				return err
			}
			return apiperf.Errorf(apiperf.ECONFLICT, "product %d has fewer than %d units in stock", in.ProductID, in.Quantity)
		}
		var k any
		if key != "" {
			k = key
		}
		res, err = tx.StmtContext(ctx, d.stmts.insertOrder).ExecContext(ctx, in.Quantity, in.Quantity, k, in.ProductID)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil && key != "" && apiperf.ErrorCode(err) == apiperf.ECONFLICT {
		// The key is already on an order: a request that committed but died
		// before recording its response. That order is this request's answer.
		if existing := d.orderByKey(ctx, key); existing != nil {
			return existing, nil
		}
	}
	if err != nil {
		return nil, err
	}
	// The order is read back after the commit, so the product row's lock
	// is not held for one more round trip; the row is immutable until
	// someone learns its id from this call.
	o = new(apiperf.Order)
	if err := scanOrder(d.stmts.orderByID.QueryRowContext(ctx, id), o); err != nil {
		return nil, mapError(err)
	}
	return o, nil
}

func (d *DB) orderByKey(ctx context.Context, key string) *apiperf.Order {
	o := new(apiperf.Order)
	if scanOrder(d.stmts.orderByKey.QueryRowContext(ctx, key), o) != nil {
		return nil
	}
	return o
}

// Order returns one order.
func (d *DB) Order(ctx context.Context, id int64) (_ *apiperf.Order, err error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	o := new(apiperf.Order)
	if err := scanOrder(d.stmts.orderByID.QueryRowContext(ctx, id), o); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errOrderNotFound(id)
		}
		defer apiperf.Wrap(&err, "Order(%d)", id)
		return nil, mapError(err)
	}
	return o, nil
}

// Orders lists orders in id order, filtered by status and product.
func (d *DB) Orders(ctx context.Context, f apiperf.OrderFilter) (_ []apiperf.Order, err error) {
	defer apiperf.Wrap(&err, "Orders")
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	var rows *sql.Rows
	switch {
	case f.Status != "" && f.ProductID != 0:
		rows, err = d.stmts.ordersByBoth.QueryContext(ctx, f.ProductID, string(f.Status), f.After, f.Limit)
	case f.Status != "":
		rows, err = d.stmts.ordersByStatus.QueryContext(ctx, string(f.Status), f.After, f.Limit)
	case f.ProductID != 0:
		rows, err = d.stmts.ordersByProduct.QueryContext(ctx, f.ProductID, f.After, f.Limit)
	default:
		rows, err = d.stmts.ordersAfter.QueryContext(ctx, f.After, f.Limit)
	}
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	out := make([]apiperf.Order, 0, f.Limit)
	for rows.Next() {
		out = append(out, apiperf.Order{})
		if err := scanOrder(rows, &out[len(out)-1]); err != nil {
			return nil, mapError(err)
		}
	}
	return out, mapError(rows.Err())
}

// SetOrderStatus moves an order along its life; cancelling returns the
// units it held to the product in the same transaction.
func (d *DB) SetOrderStatus(ctx context.Context, id int64, status apiperf.OrderStatus) (o *apiperf.Order, err error) {
	defer apiperf.Wrap(&err, "SetOrderStatus(%d, %s)", id, status)
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	o = new(apiperf.Order)
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		if err := d.lockOrder(ctx, tx, id, o); err != nil {
			return err
		}
		if !o.Status.CanBecome(status) {
			return apiperf.Errorf(apiperf.ECONFLICT, "order %d cannot go from %s to %s", id, o.Status, status)
		}
		if _, err := tx.StmtContext(ctx, d.stmts.setOrderStatus).ExecContext(ctx, string(status), id); err != nil {
			return err
		}
		if status == apiperf.StatusCancelled && o.Status.HoldsStock() {
			if _, err := tx.StmtContext(ctx, d.stmts.returnStock).ExecContext(ctx, o.Quantity, o.ProductID); err != nil {
				return err
			}
		}
		return scanOrder(tx.StmtContext(ctx, d.stmts.orderByID).QueryRowContext(ctx, id), o)
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// DeleteOrder removes an order and returns the units it still held.
func (d *DB) DeleteOrder(ctx context.Context, id int64) (o *apiperf.Order, err error) {
	defer apiperf.Wrap(&err, "DeleteOrder(%d)", id)
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	o = new(apiperf.Order)
	err = d.inTx(ctx, func(tx *sql.Tx) error {
		if err := d.lockOrder(ctx, tx, id, o); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, d.stmts.deleteOrder).ExecContext(ctx, id); err != nil {
			return err
		}
		if o.Status.HoldsStock() {
			_, err := tx.StmtContext(ctx, d.stmts.returnStock).ExecContext(ctx, o.Quantity, o.ProductID)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (d *DB) lockOrder(ctx context.Context, tx *sql.Tx, id int64, o *apiperf.Order) error {
	err := scanOrder(tx.StmtContext(ctx, d.stmts.orderForUpdate).QueryRowContext(ctx, id), o)
	if errors.Is(err, sql.ErrNoRows) {
		return errOrderNotFound(id)
	}
	return err
}
