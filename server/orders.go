package server

import (
	"crypto/sha256"
	"strconv"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
)

// createOrder reserves stock and creates a pending order. With an
// Idempotency-Key, the response is stored with the key in the order's own
// transaction and replayed for retries with the same body; see
// docs/idempotency.md for the design. key is the index of the API key the
// request authenticated with (see keyIndex), negative for none.
func (s *Server) createOrder(ctx *fasthttp.RequestCtx, key int) {
	var b orderBody
	if !s.decodeBody(ctx, &b, false) {
		return
	}
	in, err := orderInput(&b)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	p := &apiperf.OrderPlacement{In: in}
	if idem, present, reason := idempotencyKey(ctx); reason != "" {
		s.writeProblem(ctx, Problem{Status: fasthttp.StatusBadRequest, Detail: "the Idempotency-Key header is invalid",
			Errors: []apiperf.FieldError{{Field: "Idempotency-Key", Message: reason}}})
		return
	} else if present {
		p.Key = &apiperf.IdempotencyKey{Scope: s.scope(key), Key: idem, RequestHash: in.Digest()}
		// The response is rendered inside the store's transaction, so it
		// captures copies, never the request context itself.
		rid, path := requestID(ctx), string(ctx.Path())
		p.Respond = func(o *apiperf.Order, err error) apiperf.StoredResponse {
			if err != nil {
				pr := problemOf(err)
				return apiperf.StoredResponse{Status: pr.Status, Body: problemBody(pr, path, rid)}
			}
			body, _ := json.Marshal(o) // an Order always encodes
			return apiperf.StoredResponse{Status: fasthttp.StatusCreated, Body: body}
		}
	}
	s.cfg.Orders.PlaceOrders(s.callContext(ctx), []*apiperf.OrderPlacement{p})
	// The product's cached body goes whenever its stock may have moved,
	// including when the outcome is unknown: a stale stock must not outlive
	// an order that committed.
	if p.StockMayHaveChanged && !p.Invalidated {
		s.invalidateProduct(s.callContext(ctx), in.ProductID)
	}
	switch {
	case p.Stored != nil && p.Order != nil:
		location(ctx, p.Order.ID)
		s.writeStored(ctx, p.Stored, false)
	case p.Stored != nil:
		s.writeStored(ctx, p.Stored, p.Replayed)
	case p.Err != nil:
		s.writeError(ctx, p.Err)
	default:
		location(ctx, p.Order.ID)
		s.writeJSON(ctx, fasthttp.StatusCreated, p.Order)
	}
}

// writeStored answers with a response stored for an idempotency key. A
// replayed 201 gets its Location from the stored body's id.
func (s *Server) writeStored(ctx *fasthttp.RequestCtx, r *apiperf.StoredResponse, replayed bool) {
	ctx.Response.Header.SetContentType(contentTypeJSON)
	if r.Status >= 400 {
		ctx.Response.Header.SetContentType(problemContentType)
	}
	ctx.SetStatusCode(r.Status)
	ctx.SetBody(r.Body)
	if !replayed {
		return
	}
	ctx.Response.Header.Set("Idempotent-Replayed", "true")
	if r.Status == fasthttp.StatusCreated {
		var o struct {
			ID int64 `json:"id"`
		}
		if json.Unmarshal(r.Body, &o) == nil && o.ID > 0 {
			location(ctx, o.ID)
		}
	}
}

// scope is the idempotency scope of the client holding the API key of
// index key: that key's when keys are configured (writes are authorized by
// then), else the one shared scope. docs/idempotency.md says why not the
// client's address.
func (s *Server) scope(key int) apiperf.Scope {
	if key >= 0 {
		return s.scopes[key]
	}
	return apiperf.SharedScope
}

// scopeOf is the idempotency scope of an API key: a digest, so records
// never hold the key itself.
func scopeOf(apiKey string) apiperf.Scope {
	return sha256.Sum256([]byte("api-perf idempotency scope\x00" + apiKey))
}

// idempotencyKey reads the Idempotency-Key header. The draft standard makes
// it a Structured Field string ("..." with \" and \\ escapes, printable
// ASCII and space inside); the bare form most clients send (printable
// ASCII without spaces) is accepted too, and both name the same key. A
// key has 1 to 255 bytes. present is false when there is no header; a
// non-empty reason says why the header is unacceptable. A header sent
// with an empty value is present and malformed: reading it as absent
// would place the order without the protection its client asked for.
func idempotencyKey(ctx *fasthttp.RequestCtx) (key string, present bool, reason string) {
	all := ctx.Request.Header.PeekAll("Idempotency-Key")
	switch {
	case len(all) == 0:
		return "", false, ""
	case len(all) > 1:
		return "", true, "must be sent once"
	}
	raw := all[0]
	if len(raw) == 0 {
		return "", true, "must be 1 to " + strconv.Itoa(apiperf.MaxIdempotencyKeyLen) + " bytes long"
	}
	var buf []byte
	if raw[0] == '"' {
		if len(raw) < 2 || raw[len(raw)-1] != '"' {
			return "", true, `a quoted key must end with a double quote`
		}
		buf = make([]byte, 0, len(raw)-2)
		for i := 1; i < len(raw)-1; i++ {
			c := raw[i]
			switch {
			case c == '\\':
				if i+1 >= len(raw)-1 || (raw[i+1] != '"' && raw[i+1] != '\\') {
					return "", true, `inside quotes, a backslash may only escape " or \`
				}
				i++
				buf = append(buf, raw[i])
			case c == '"':
				return "", true, `inside quotes, a double quote must be escaped`
			case c < 0x20 || c > 0x7e:
				return "", true, "must be printable ASCII"
			default:
				buf = append(buf, c)
			}
		}
	} else {
		for _, c := range raw {
			if c <= 0x20 || c > 0x7e {
				return "", true, "must be printable ASCII without spaces (or a quoted string)"
			}
		}
		buf = raw
	}
	if len(buf) == 0 || len(buf) > apiperf.MaxIdempotencyKeyLen {
		return "", true, "must be 1 to " + strconv.Itoa(apiperf.MaxIdempotencyKeyLen) + " bytes long"
	}
	return string(buf), true, ""
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
	f.Limit++ // one extra row tells whether another page exists
	items, err := s.cfg.Orders.Orders(s.callContext(ctx), f)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.writeJSON(ctx, fasthttp.StatusOK, pageOf(items, want, func(o *apiperf.Order) int64 { return o.ID }))
}

func (s *Server) getOrder(ctx *fasthttp.RequestCtx) {
	id, ok := s.pathID(ctx)
	if !ok {
		return
	}
	o, err := s.cfg.Orders.Order(s.callContext(ctx), id)
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
	o, err := s.cfg.Orders.SetOrderStatus(s.callContext(ctx), id, status)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if status == apiperf.StatusCancelled {
		s.invalidateProduct(s.callContext(ctx), o.ProductID)
	}
	s.writeJSON(ctx, fasthttp.StatusOK, o)
}

func (s *Server) deleteOrder(ctx *fasthttp.RequestCtx) {
	id, ok := s.pathID(ctx)
	if !ok {
		return
	}
	o, err := s.cfg.Orders.DeleteOrder(s.callContext(ctx), id)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	if o.Status.HoldsStock() {
		s.invalidateProduct(s.callContext(ctx), o.ProductID)
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
