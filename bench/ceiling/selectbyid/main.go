// Command selectbyid is the throughput ceiling of an uncached product read:
// per request, one prepared SELECT by primary key on api-perf's MySQL
// schema, encoded with goccy/go-json. No cache, no middleware. api-perf's
// GET /products/{id} with its cache off is measured against it.
//
// Environment: HTTP_ADDR (default 127.0.0.1:18091), MYSQL_DSN (required; a
// database migrated by "api-perf migrate") and DB_MAX_OPEN_CONNS (default
// 16, give it the server's value).
package main

import (
	"database/sql"
	"errors"
	"log"
	"os"
	"strconv"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

type product struct {
	ID          int64           `json:"id"`
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Price       json.RawMessage `json:"price"`
	Stock       int64           `json:"stock"`
	Version     int64           `json:"version"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

func main() {
	db, err := sql.Open("mysql", os.Getenv("MYSQL_DSN"))
	if err != nil {
		log.Fatal(err)
	}
	conns, _ := strconv.Atoi(getenv("DB_MAX_OPEN_CONNS", "16"))
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	byID, err := db.Prepare("SELECT id, name, description, price, stock, version, created_at, updated_at FROM products WHERE id = ?")
	if err != nil {
		log.Fatal(err)
	}
	s := &fasthttp.Server{Name: "selectbyid", Handler: func(ctx *fasthttp.RequestCtx) {
		path := ctx.Path()
		const prefix = "/products/"
		if len(path) <= len(prefix) || string(path[:len(prefix)]) != prefix {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		id, err := strconv.ParseInt(string(path[len(prefix):]), 10, 64)
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusUnprocessableEntity)
			return
		}
		var p product
		var desc sql.NullString
		var price []byte
		err = byID.QueryRowContext(ctx, id).Scan(&p.ID, &p.Name, &desc, &price, &p.Stock, &p.Version, &p.CreatedAt, &p.UpdatedAt)
		if errors.Is(err, sql.ErrNoRows) {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		} else if err != nil {
			ctx.SetStatusCode(fasthttp.StatusInternalServerError)
			return
		}
		if desc.Valid {
			p.Description = &desc.String
		}
		p.Price = json.RawMessage(price)
		body, err := json.Marshal(&p)
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusInternalServerError)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	log.Fatal(s.ListenAndServe(getenv("HTTP_ADDR", "127.0.0.1:18091")))
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
