// Command ordertx is the throughput ceiling of order creation: per request,
// one transaction that reserves stock with a conditional UPDATE, inserts
// the order at the product's price and commits, on api-perf's MySQL schema
// with prepared statements. No validation beyond parsing, no idempotency,
// no cache invalidation. api-perf's POST /orders is measured against it.
//
// Environment: HTTP_ADDR (default 127.0.0.1:18092), MYSQL_DSN (required; a
// database migrated by "api-perf migrate") and DB_MAX_OPEN_CONNS (default
// 16, give it the server's value).
package main

import (
	"database/sql"
	"log"
	"os"
	"strconv"

	_ "github.com/go-sql-driver/mysql"
	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

type orderRequest struct {
	ProductID int64 `json:"product_id"`
	Quantity  int64 `json:"quantity"`
}

type order struct {
	ID        int64  `json:"id"`
	ProductID int64  `json:"product_id"`
	Quantity  int64  `json:"quantity"`
	Status    string `json:"status"`
}

func main() {
	db, err := sql.Open("mysql", os.Getenv("MYSQL_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	conns, _ := strconv.Atoi(getenv("DB_MAX_OPEN_CONNS", "16"))
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	reserve, err := db.Prepare("UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?")
	if err != nil {
		log.Fatal(err)
	}
	insert, err := db.Prepare("INSERT INTO orders (product_id, quantity, unit_price, total, status) " +
		"SELECT id, ?, price, price * ?, 'pending' FROM products WHERE id = ?")
	if err != nil {
		log.Fatal(err)
	}
	s := &fasthttp.Server{Name: "ordertx", Handler: func(ctx *fasthttp.RequestCtx) {
		var in orderRequest
		if err := json.Unmarshal(ctx.PostBody(), &in); err != nil || in.ProductID < 1 || in.Quantity < 1 {
			ctx.SetStatusCode(fasthttp.StatusUnprocessableEntity)
			return
		}
		status, id := place(ctx, db, reserve, insert, in)
		if status != fasthttp.StatusCreated {
			ctx.SetStatusCode(status)
			return
		}
		body, _ := json.Marshal(order{ID: id, ProductID: in.ProductID, Quantity: in.Quantity, Status: "pending"})
		ctx.SetStatusCode(fasthttp.StatusCreated)
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	log.Fatal(s.ListenAndServe(getenv("HTTP_ADDR", "127.0.0.1:18092")))
}

// place runs the order's transaction and returns the HTTP status and the
// new order's id.
func place(ctx *fasthttp.RequestCtx, db *sql.DB, reserve, insert *sql.Stmt, in orderRequest) (int, int64) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fasthttp.StatusServiceUnavailable, 0
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.Stmt(reserve).ExecContext(ctx, in.Quantity, in.ProductID, in.Quantity)
	if err != nil {
		return fasthttp.StatusInternalServerError, 0
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fasthttp.StatusConflict, 0
	}
	res, err = tx.Stmt(insert).ExecContext(ctx, in.Quantity, in.Quantity, in.ProductID)
	if err != nil {
		return fasthttp.StatusInternalServerError, 0
	}
	id, err := res.LastInsertId()
	if err != nil || tx.Commit() != nil {
		return fasthttp.StatusInternalServerError, 0
	}
	return fasthttp.StatusCreated, id
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
