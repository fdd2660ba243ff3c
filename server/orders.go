package server

import (
	"crypto/sha256"
	"strconv"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
)

const maxIdempotencyKeyLen = 255

// createOrder reserves stock and creates a pending order. With an
// Idempotency-Key, the first request's response is stored and replayed for
// retries with the same body.
func (s *Server) createOrder(ctx *fasthttp.RequestCtx) {
	var b orderBody
	if !s.decodeBody(ctx, &b, false) {
		return
	}
	in, err := orderInput(&b)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	key := string(ctx.Request.Header.Peek("Idempotency-Key"))
	if len(key) > maxIdempotencyKeyLen {
		s.writeError(ctx, &apiperf.Error{Code: apiperf.EINVALID, Message: "Idempotency-Key is too long",
			Fields: []apiperf.FieldError{{Field: "Idempotency-Key", Message: "must be at most 255 bytes"}}})
		return
	}
	if key == "" || s.cfg.Idempotency == nil {
		s.placeOrder(ctx, in, "")
		return
	}
	// The hash covers the parsed request, so formatting differences in
	// the body do not count as a different request.
	h := sha256.New()
	h.Write(strconv.AppendInt(nil, in.ProductID, 10))
	h.Write([]byte{':'})
	h.Write(strconv.AppendInt(nil, in.Quantity, 10))
	stored, err := s.cfg.Idempotency.BeginIdempotent(s.base, key, h.Sum(nil))
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if stored != nil {
		ctx.Response.Header.Set("Idempotent-Replayed", "true")
		ctx.Response.Header.SetContentType(contentTypeJSON)
		if stored.Status >= 400 {
			ctx.Response.Header.SetContentType(problemContentType)
		}
		ctx.SetStatusCode(stored.Status)
		ctx.SetBody(stored.Body)
		if stored.Status == fasthttp.StatusCreated {
			var o struct {
				ID int64 `json:"id"`
			}
			if json.Unmarshal(stored.Body, &o) == nil && o.ID > 0 {
				location(ctx, o.ID)
			}
		}
		return
	}
	s.placeOrder(ctx, in, key)
	status := ctx.Response.StatusCode()
	if status >= 500 {
		// A retry may succeed: release the key rather than replay a failure.
		if err := s.cfg.Idempotency.AbandonIdempotent(s.base, key); err != nil {
			s.log.Warn("idempotency key release failed", "request_id", requestID(ctx), "error", err)
		}
		return
	}
	resp := apiperf.StoredResponse{Status: status, Body: append([]byte(nil), ctx.Response.Body()...)}
	if err := s.cfg.Idempotency.CompleteIdempotent(s.base, key, resp); err != nil {
		s.log.Warn("idempotency response not stored", "request_id", requestID(ctx), "error", err)
	}
}

func (s *Server) placeOrder(ctx *fasthttp.RequestCtx, in apiperf.OrderInput, key string) {
	o, err := s.cfg.Orders.CreateOrder(s.base, in, key)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.invalidateProduct(s.base, o.ProductID)
	location(ctx, o.ID)
	s.writeJSON(ctx, fasthttp.StatusCreated, o)
}

type orderList struct {
	Items      []apiperf.Order `json:"items"`
	NextCursor *string         `json:"next_cursor"`
}

func (s *Server) listOrders(ctx *fasthttp.RequestCtx) {
	var v validator
	f := apiperf.OrderFilter{Page: page(ctx, &v)}
	args := ctx.QueryArgs()
	if raw := args.Peek("status"); len(raw) > 0 {
		f.Status = apiperf.OrderStatus(raw)
		if !f.Status.Valid() {
			v.add("status", "must be one of pending, paid, shipped, delivered, cancelled")
		}
	}
	if raw := args.Peek("product_id"); len(raw) > 0 {
		id, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || id < 1 {
			v.add("product_id", "must be a positive integer")
		}
		f.ProductID = id
	}
	if err := v.err(); err != nil {
		s.writeError(ctx, err)
		return
	}
	want := f.Limit
	f.Limit++
	items, err := s.cfg.Orders.Orders(s.base, f)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	out := orderList{Items: items}
	if len(items) > want {
		out.Items = items[:want]
		c := encodeCursor(items[want-1].ID)
		out.NextCursor = &c
	}
	s.writeJSON(ctx, fasthttp.StatusOK, out)
}

func (s *Server) getOrder(ctx *fasthttp.RequestCtx) {
	id, ok := s.pathID(ctx)
	if !ok {
		return
	}
	o, err := s.cfg.Orders.Order(s.base, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.writeJSON(ctx, fasthttp.StatusOK, o)
}

func (s *Server) patchOrder(ctx *fasthttp.RequestCtx) {
	id, ok := s.pathID(ctx)
	if !ok {
		return
	}
	var b statusBody
	if !s.decodeBody(ctx, &b, true) {
		return
	}
	status, err := orderStatus(&b)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	o, err := s.cfg.Orders.SetOrderStatus(s.base, id, status)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if status == apiperf.StatusCancelled {
		s.invalidateProduct(s.base, o.ProductID)
	}
	s.writeJSON(ctx, fasthttp.StatusOK, o)
}

func (s *Server) deleteOrder(ctx *fasthttp.RequestCtx) {
	id, ok := s.pathID(ctx)
	if !ok {
		return
	}
	o, err := s.cfg.Orders.DeleteOrder(s.base, id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if o.Status.HoldsStock() {
		s.invalidateProduct(s.base, o.ProductID)
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
