package storage

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// statements are prepared once at Open. Every field is a *sql.Stmt whose tag
// holds its SQL, so adding a statement is one line; a statement the
// dialects cannot share has a mysql and a sqlite tag instead.
type statements struct {
	productByID    *sql.Stmt `sql:"SELECT id, name, description, price, stock, version, created_at, updated_at FROM products WHERE id = ?"`
	insertProduct  *sql.Stmt `sql:"INSERT INTO products (name, description, price, stock) VALUES (?, ?, ?, ?)"`
	updateProduct  *sql.Stmt `sql:"UPDATE products SET name = CASE WHEN ? THEN ? ELSE name END, description = CASE WHEN ? THEN ? ELSE description END, price = CASE WHEN ? THEN ? ELSE price END, stock = CASE WHEN ? THEN ? ELSE stock END, version = version + 1, updated_at = {now} WHERE id = ? AND (? = 0 OR version = ?) AND (? = 0 OR stock = ?)"`
	productState   *sql.Stmt `sql:"SELECT version, stock FROM products WHERE id = ?"`
	deleteProduct  *sql.Stmt `sql:"DELETE FROM products WHERE id = ?"`
	lockProduct    *sql.Stmt `sql:"SELECT id, price, stock, {now} FROM products WHERE id = ?{forupdate}"`
	takeStock      *sql.Stmt `sql:"UPDATE products SET stock = stock - ?, version = version + 1, updated_at = ? WHERE id = ? AND stock >= ?"`
	returnStock    *sql.Stmt `sql:"UPDATE products SET stock = stock + ?, version = version + 1, updated_at = {now} WHERE id = ?"`
	insertOrder    *sql.Stmt `sql:"INSERT INTO orders (product_id, quantity, unit_price, total, status, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)"`
	orderByID      *sql.Stmt `sql:"SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders WHERE id = ?"`
	orderForUpdate *sql.Stmt `sql:"SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders WHERE id = ?{forupdate}"`
	orderForShare  *sql.Stmt `sql:"SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders WHERE id = ?{forshare}"`
	setOrderStatus *sql.Stmt `sql:"UPDATE orders SET status = ?, updated_at = {now} WHERE id = ?"`
	deleteOrder    *sql.Stmt `sql:"DELETE FROM orders WHERE id = ?"`
	// putRecord inserts an idempotency record, or replaces one that has
	// expired; it affects no row when an unexpired record holds the key.
	// MySQL applies the assignments in order, so expires_at, which every
	// condition reads, is assigned last.
	putRecord *sql.Stmt `mysql:"INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) VALUES (?, ?, ?, ?, ?, {now}, {expires}) ON DUPLICATE KEY UPDATE request_hash = IF(expires_at <= {now}, VALUES(request_hash), request_hash), status_code = IF(expires_at <= {now}, VALUES(status_code), status_code), body = IF(expires_at <= {now}, VALUES(body), body), created_at = IF(expires_at <= {now}, VALUES(created_at), created_at), expires_at = IF(expires_at <= {now}, VALUES(expires_at), expires_at)" sqlite:"INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at) VALUES (?, ?, ?, ?, ?, {now}, {expires}) ON CONFLICT (scope, idem_key) DO UPDATE SET request_hash = excluded.request_hash, status_code = excluded.status_code, body = excluded.body, created_at = excluded.created_at, expires_at = excluded.expires_at WHERE idempotency_records.expires_at <= {now}"`
	record    *sql.Stmt `sql:"SELECT request_hash, status_code, body FROM idempotency_records WHERE scope = ? AND idem_key = ? AND expires_at > {now}{forshare}"`
	// purgeRecords deletes up to purgeBatch expired records, oldest first.
	// MySQL takes LIMIT on DELETE; SQLite (without that compile option) and
	// MySQL's IN subqueries do not share a form.
	purgeRecords *sql.Stmt `mysql:"DELETE FROM idempotency_records WHERE expires_at <= {now} ORDER BY expires_at LIMIT 1000" sqlite:"DELETE FROM idempotency_records WHERE (scope, idem_key) IN (SELECT scope, idem_key FROM idempotency_records WHERE expires_at <= {now} ORDER BY expires_at LIMIT 1000)"`
	// lists are prepared on the primary as on every replica.
	lists listStatements
}

// listStatements are the list reads: the only statements replicas run
// (see replicas.go), so each replica prepares just these.
type listStatements struct {
	productsAfter   *sql.Stmt `sql:"SELECT id, name, description, price, stock, version, created_at, updated_at FROM products WHERE id > ? ORDER BY id LIMIT ?"`
	ordersAfter     *sql.Stmt `sql:"SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders WHERE id > ? ORDER BY id LIMIT ?"`
	ordersByStatus  *sql.Stmt `sql:"SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders WHERE status = ? AND id > ? ORDER BY id LIMIT ?"`
	ordersByProduct *sql.Stmt `sql:"SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders WHERE product_id = ? AND id > ? ORDER BY id LIMIT ?"`
	ordersByBoth    *sql.Stmt `sql:"SELECT id, product_id, quantity, unit_price, total, status, created_at, updated_at FROM orders WHERE product_id = ? AND status = ? AND id > ? ORDER BY id LIMIT ?"`
}

// prepare fills d.stmts from the struct tags.
func (d *DB) prepare(ctx context.Context) error {
	return prepareStatements(ctx, d.db, d.dialect, reflect.ValueOf(&d.stmts).Elem())
}

// prepareStatements prepares on db every *sql.Stmt field of the struct v
// (and of the structs it holds) from its tag. On failure the statements
// prepared so far stay set, for the caller to close.
func prepareStatements(ctx context.Context, db *sql.DB, dl *dialect, v reflect.Value) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := reflect.NewAt(t.Field(i).Type, v.Field(i).Addr().UnsafePointer()).Elem()
		if t.Field(i).Type.Kind() == reflect.Struct {
			if err := prepareStatements(ctx, db, dl, f); err != nil {
				return err
			}
			continue
		}
		q, ok := t.Field(i).Tag.Lookup(dl.name)
		if !ok {
			q = t.Field(i).Tag.Get("sql")
		}
		q = dl.expand(q)
		var st *sql.Stmt
		err := retryUnavailable(ctx, func() (err error) {
			st, err = db.PrepareContext(ctx, q)
			return mapError(err)
		})
		if err != nil {
			return fmt.Errorf("prepare %s: %w", t.Field(i).Name, err)
		}
		f.Set(reflect.ValueOf(st))
	}
	return nil
}

func (s *statements) close() { closeStatements(reflect.ValueOf(s).Elem()) }

func (s *listStatements) close() { closeStatements(reflect.ValueOf(s).Elem()) }

// closeStatements closes every prepared *sql.Stmt field of the struct v,
// and of the structs it holds.
func closeStatements(v reflect.Value) {
	for i := 0; i < v.NumField(); i++ {
		f := reflect.NewAt(v.Field(i).Type(), v.Field(i).Addr().UnsafePointer()).Elem()
		if f.Kind() == reflect.Struct {
			closeStatements(f)
			continue
		}
		if st, ok := f.Interface().(*sql.Stmt); ok && st != nil {
			st.Close()
		}
	}
}

// dbTime scans a timestamp from either dialect: MySQL returns time.Time
// (parseTime is forced on), SQLite returns the RFC 3339 text it stored.
type dbTime struct{ t *time.Time }

func (s dbTime) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		*s.t = v.UTC()
		return nil
	case string:
		return s.parse(v)
	case []byte:
		return s.parse(string(v))
	}
	return fmt.Errorf("cannot scan %T into a time", src)
}

func (s dbTime) parse(v string) error {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t, err = time.Parse("2006-01-02 15:04:05.999999", v)
	}
	*s.t = t.UTC()
	return err
}

type scanner interface{ Scan(dest ...any) error }

func scanProduct(r scanner, p *apiperf.Product) error {
	var desc sql.NullString
	if err := r.Scan(&p.ID, &p.Name, &desc, &p.Price, &p.Stock, &p.Version,
		dbTime{&p.CreatedAt}, dbTime{&p.UpdatedAt}); err != nil {
		return err
	}
	p.Description = nil
	if desc.Valid {
		s := desc.String
		p.Description = &s
	}
	return nil
}

func scanOrder(r scanner, o *apiperf.Order) error {
	return r.Scan(&o.ID, &o.ProductID, &o.Quantity, &o.UnitPrice, &o.Total, (*string)(&o.Status),
		dbTime{&o.CreatedAt}, dbTime{&o.UpdatedAt})
}
