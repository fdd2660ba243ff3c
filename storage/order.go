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

// Order returns one order, read on the primary: a client that placed an
// order and follows its Location must find it.
func (d *DB) Order(ctx context.Context, id int64) (_ *apiperf.Order, err error) {
	defer apiperf.Wrap(&err, "Order(%d)", id)
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	d.metrics.primaryByID.Inc()
	o := new(apiperf.Order)
	if err = scanOrder(d.stmts.orderByID.QueryRowContext(ctx, id), o); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errOrderNotFound(id)
		}
		return nil, mapError(err)
	}
	return o, nil
}

// Orders lists orders in id order, filtered by status and product, from a
// replica within Config.MaxReplicaLag when there is one (see listRead).
func (d *DB) Orders(ctx context.Context, f apiperf.OrderFilter) (out []apiperf.Order, err error) {
	defer apiperf.Wrap(&err, "Orders")
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	err = d.listRead(ctx, func(ctx context.Context, st *listStatements) error {
		var rows *sql.Rows
		var err error
		switch {
		case f.Status != "" && f.ProductID != 0:
			rows, err = st.ordersByBoth.QueryContext(ctx, f.ProductID, string(f.Status), f.After, f.Limit)
		case f.Status != "":
			rows, err = st.ordersByStatus.QueryContext(ctx, string(f.Status), f.After, f.Limit)
		case f.ProductID != 0:
			rows, err = st.ordersByProduct.QueryContext(ctx, f.ProductID, f.After, f.Limit)
		default:
			rows, err = st.ordersAfter.QueryContext(ctx, f.After, f.Limit)
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		out = make([]apiperf.Order, 0, f.Limit)
		for rows.Next() {
			out = append(out, apiperf.Order{})
			if err := scanOrder(rows, &out[len(out)-1]); err != nil {
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
