package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
)

var errUnauthorized = &apiperf.Error{Code: apiperf.EUNAUTHORIZED, Message: "writes need Authorization: Bearer <api key>"}

const contentTypeJSON = "application/json"

// productKey is the cache key of a product's body: its id in canonical
// decimal. The cache adds its own prefix.
func productKey(id int64) string { return strconv.FormatInt(id, 10) }

// ProductCacheKey is the cache key of a product's body, for a store that
// drops it itself once the product's stock changed (see
// apiperf.OrderPlacement.Invalidated).
func ProductCacheKey(id int64) string { return productKey(id) }

// pathID parses the {id} path parameter, answering 422 when it is not a
// positive integer.
func (s *Server) pathID(ctx *fasthttp.RequestCtx) (int64, bool) {
	id, _, ok := s.pathIDKey(ctx)
	return id, ok
}

// pathIDKey is pathID that also returns the id's canonical decimal form,
// which is the path text itself unless it had a sign or leading zeros,
// so the hot path needs no new string for its cache key.
func (s *Server) pathIDKey(ctx *fasthttp.RequestCtx) (int64, string, bool) {
	raw, _ := ctx.UserValue("id").(string)
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		s.writeError(ctx, &apiperf.Error{Code: apiperf.EINVALID, Message: "the id in the path is invalid",
			Fields: []apiperf.FieldError{{Field: "id", Message: "must be a positive integer"}}})
		return 0, "", false
	}
	if raw[0] < '1' || raw[0] > '9' {
		raw = productKey(id)
	}
	return id, raw, true
}

// etag is a strong validator derived from the exact body, so every replica
// computes the same one for the same representation.
func appendETag(dst, body []byte) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, xxhash.Sum64(body), 16)
	return append(dst, '"')
}

// etagMatches compares an If-None-Match or If-Match list with etag. weak
// selects RFC 9110's weak comparison (If-None-Match); If-Match compares
// strongly, so a W/ tag never matches it.
func etagMatches(header, etag []byte, weak bool) bool {
	for len(header) > 0 {
		var part []byte
		if i := bytes.IndexByte(header, ','); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, nil
		}
		part = trimSpace(part)
		if weak {
			part = bytes.TrimPrefix(part, []byte("W/"))
		}
		if string(part) == "*" || bytes.Equal(part, etag) {
			return true
		}
	}
	return false
}

func encodeProduct(p *apiperf.Product) ([]byte, error) { return json.Marshal(p) }

// productBody returns a product's exact JSON body, from the cache when there is one.
func (s *Server) productBody(ctx context.Context, id int64, key string) ([]byte, error) {
	if s.cfg.Cache == nil {
		return s.loadProduct(ctx, id)
	}
	return s.cfg.Cache.Get(ctx, key, s.loadProductKey)
}

// loadProductByKey is the cache's loader: the key is the product id.
func (s *Server) loadProductByKey(ctx context.Context, key string) ([]byte, error) {
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return nil, &apiperf.Error{Code: apiperf.EINTERNAL, Err: err}
	}
	return s.loadProduct(ctx, id)
}

func (s *Server) loadProduct(ctx context.Context, id int64) ([]byte, error) {
	p, err := s.cfg.Products.Product(ctx, id)
	if err != nil {
		return nil, err
	}
	return encodeProduct(p)
}

// invalidateProduct drops a product's cached body after a committed write.
// A failure is logged: the write stands, and the TTL bounds staleness.
func (s *Server) invalidateProduct(ctx context.Context, id int64) {
	if s.cfg.Cache == nil {
		return
	}
	if err := s.cfg.Cache.Invalidate(ctx, productKey(id)); err != nil {
		s.log.Warn("cache invalidation failed", "product_id", id, "error", err)
	}
}

// getProduct is the hottest route: it serves the stored body as is.
func (s *Server) getProduct(ctx *fasthttp.RequestCtx) {
	id, key, ok := s.pathIDKey(ctx)
	if !ok {
		return
	}
	body, err := s.productBody(s.callContext(ctx), id, key)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	var tag [24]byte
	etag := appendETag(tag[:0], body)
	ctx.Response.Header.SetCanonical(hETag, etag)
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && etagMatches(inm, etag, true) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.Response.Header.SetContentType(contentTypeJSON)
	ctx.Response.SetBodyRaw(body)
}

func (s *Server) writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	ctx.Response.Header.SetContentType(contentTypeJSON)
	ctx.SetStatusCode(status)
	ctx.SetBody(body)
}

// writeProduct answers with a product and its ETag.
func (s *Server) writeProduct(ctx *fasthttp.RequestCtx, status int, p *apiperf.Product) {
	body, err := encodeProduct(p)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	var tag [24]byte
	ctx.Response.Header.SetCanonical(hETag, appendETag(tag[:0], body))
	ctx.Response.Header.SetContentType(contentTypeJSON)
	ctx.SetStatusCode(status)
	ctx.SetBody(body)
}

// location sets the Location of a created resource under the path the
// client used (canonical or root alias).
func location(ctx *fasthttp.RequestCtx, id int64) {
	var b [64]byte
	loc := append(b[:0], bytes.TrimSuffix(ctx.Path(), []byte("/"))...)
	loc = append(loc, '/')
	loc = strconv.AppendInt(loc, id, 10)
	ctx.Response.Header.SetBytesV("Location", loc)
}

func (s *Server) createProduct(ctx *fasthttp.RequestCtx) {
	var b productBody
	if !s.decodeBody(ctx, &b, false) {
		return
	}
	in, err := productInput(&b, false)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	p, err := s.cfg.Products.CreateProduct(s.callContext(ctx), in)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	// A GET for this id before it existed left a cached "not found".
	s.invalidateProduct(s.callContext(ctx), p.ID)
	location(ctx, p.ID)
	s.writeProduct(ctx, fasthttp.StatusCreated, p)
}

// cursor encoding: opaque to clients, the last id seen underneath.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString(strconv.AppendInt(nil, id, 10))
}

func decodeCursor(c []byte) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(string(c))
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseInt(string(raw), 10, 64)
	return id, err == nil && id >= 0
}

// page parses ?limit= and ?cursor=, collecting field errors into v.
func page(ctx *fasthttp.RequestCtx, v *validator) apiperf.Page {
	p := apiperf.Page{Limit: 20}
	args := ctx.QueryArgs()
	if raw := args.Peek("limit"); args.Has("limit") {
		n, err := strconv.Atoi(string(raw))
		if err != nil || n < 1 || n > 100 {
			v.add("limit", "must be an integer between 1 and 100")
		} else {
			p.Limit = n
		}
	}
	if raw := args.Peek("cursor"); len(raw) > 0 {
		id, ok := decodeCursor(raw)
		if !ok {
			v.add("cursor", "is not a cursor this API returned")
		}
		p.After = id
	}
	return p
}

// listPage is one page of a list: its items and, when more follow, the
// cursor of the next page.
type listPage[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// pageOf is the page of a list read with one row more than want, that row
// telling whether another page exists; id is an item's id, which the
// cursor carries.
func pageOf[T any](items []T, want int, id func(*T) int64) listPage[T] {
	out := listPage[T]{Items: items}
	if len(items) > want {
		out.Items = items[:want]
		c := encodeCursor(id(&items[want-1]))
		out.NextCursor = &c
	}
	return out
}

// listProducts serves one keyset page. Lists are read from the database,
// never cached: see the README's caching section for why.
func (s *Server) listProducts(ctx *fasthttp.RequestCtx) {
	var v validator
	pg := page(ctx, &v)
	if err := v.err(); err != nil {
		s.writeError(ctx, err)
		return
	}
	want := pg.Limit
	pg.Limit++ // one extra row tells whether another page exists
	items, err := s.cfg.Products.Products(s.callContext(ctx), pg)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.writeJSON(ctx, fasthttp.StatusOK, pageOf(items, want, func(p *apiperf.Product) int64 { return p.ID }))
}

// current loads a product and checks If-Match against its current body.
func (s *Server) current(ctx *fasthttp.RequestCtx, id int64) (*apiperf.Product, bool) {
	p, err := s.cfg.Products.Product(s.callContext(ctx), id)
	if err != nil {
		s.writeError(ctx, err)
		return nil, false
	}
	if im := ctx.Request.Header.Peek("If-Match"); len(im) > 0 {
		body, err := encodeProduct(p)
		if err != nil {
			s.writeError(ctx, err)
			return nil, false
		}
		var tag [24]byte
		if !etagMatches(im, appendETag(tag[:0], body), false) {
			s.writeError(ctx, apiperf.Errorf(apiperf.EPRECONDITION, "If-Match does not match the current ETag"))
			return nil, false
		}
	}
	return p, true
}

// productRequest reads the id and the body of a PUT or PATCH, answering
// the problem itself when either is unacceptable.
func (s *Server) productRequest(ctx *fasthttp.RequestCtx, mergePatch bool) (int64, *productBody, bool) {
	id, ok := s.pathID(ctx)
	if !ok {
		return 0, nil, false
	}
	b := new(productBody)
	if !s.decodeBody(ctx, b, mergePatch) {
		return 0, nil, false
	}
	return id, b, true
}

// replaceProduct is PUT: a full replacement, stock included (a PUT without
// stock would otherwise put back the default and undo the orders that sold
// it). Changing the stock needs If-Match, whose version guards the write,
// so a concurrent order makes it a 412 rather than a lost decrement; a PUT
// that restates the stored stock needs none (428 otherwise).
func (s *Server) replaceProduct(ctx *fasthttp.RequestCtx) {
	id, b, ok := s.productRequest(ctx, false)
	if !ok {
		return
	}
	in, err := productInput(b, true)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.update(ctx, id, in.Replacement())
}

// patchProduct applies a JSON merge patch. Only the fields it names are
// written, so a patch without stock never touches the stock; one with
// stock follows PUT's rule.
func (s *Server) patchProduct(ctx *fasthttp.RequestCtx) {
	id, b, ok := s.productRequest(ctx, true)
	if !ok {
		return
	}
	patch, err := productPatch(b)
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.update(ctx, id, patch)
}

// update writes patch, guarded by the version If-Match names when it is sent.
func (s *Server) update(ctx *fasthttp.RequestCtx, id int64, patch apiperf.ProductPatch) {
	var version int64
	if len(ctx.Request.Header.Peek("If-Match")) > 0 {
		p, ok := s.current(ctx, id)
		if !ok {
			return
		}
		version = p.Version
	}
	p, err := s.cfg.Products.UpdateProduct(s.callContext(ctx), id, patch, version)
	s.finishReplace(ctx, id, p, err)
}

func (s *Server) finishReplace(ctx *fasthttp.RequestCtx, id int64, p *apiperf.Product, err error) {
	if err != nil {
		s.writeError(ctx, err)
		return
	}
	s.invalidateProduct(s.callContext(ctx), id)
	s.writeProduct(ctx, fasthttp.StatusOK, p)
}

func (s *Server) deleteProduct(ctx *fasthttp.RequestCtx) {
	id, ok := s.pathID(ctx)
	if !ok {
		return
	}
	if err := s.cfg.Products.DeleteProduct(s.callContext(ctx), id); err != nil {
		s.writeError(ctx, err)
		return
	}
	s.invalidateProduct(s.callContext(ctx), id)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
