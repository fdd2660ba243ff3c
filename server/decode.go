package server

import (
	"bytes"
	"errors"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
)

// Request bodies decode into raw fields first, so every field is checked by
// our own rules and each bad one gets its own entry in the 422 problem,
// instead of the decoder stopping at the first type mismatch. A nil raw
// field was absent; the literal null was sent as null.

type productBody struct {
	Name, Description, Price, Stock json.RawMessage
}

type orderBody struct {
	ProductID, Quantity json.RawMessage
}

type statusBody struct {
	Status json.RawMessage
}

// fieldSetter takes a decoded object's fields and returns the names it
// does not know, sorted.
type fieldSetter interface {
	set(fields map[string]json.RawMessage) (unknown []string)
}

func (b *productBody) set(f map[string]json.RawMessage) []string {
	return assign(f, map[string]*json.RawMessage{"name": &b.Name, "description": &b.Description, "price": &b.Price, "stock": &b.Stock})
}

func (b *orderBody) set(f map[string]json.RawMessage) []string {
	return assign(f, map[string]*json.RawMessage{"product_id": &b.ProductID, "quantity": &b.Quantity})
}

func (b *statusBody) set(f map[string]json.RawMessage) []string {
	return assign(f, map[string]*json.RawMessage{"status": &b.Status})
}

func assign(f map[string]json.RawMessage, known map[string]*json.RawMessage) (unknown []string) {
	for k, v := range f {
		if dst, ok := known[k]; ok {
			*dst = v
		} else {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return unknown
}

// errBadJSON is a body that is not one well-formed JSON object.
var errBadJSON = errors.New("the request body is not a well-formed JSON object")

// decodeBody checks the content type and decodes the body strictly into v:
// one JSON object, no unknown fields. It answers the problem itself and
// returns false when the body is unacceptable.
func (s *Server) decodeBody(ctx *fasthttp.RequestCtx, v fieldSetter, mergePatch bool) bool {
	if !jsonContentType(ctx.Request.Header.ContentType(), mergePatch) {
		want := "application/json"
		if mergePatch {
			want += " or application/merge-patch+json"
		}
		s.problem(ctx, fasthttp.StatusUnsupportedMediaType, "Content-Type must be "+want)
		return false
	}
	body := ctx.PostBody()
	trimmed := bytes.TrimSpace(body)
	// A JSON text is UTF-8. The decoders would replace bytes that are not
	// with U+FFFD and store characters the client never sent.
	if len(trimmed) == 0 || trimmed[0] != '{' || !utf8.Valid(trimmed) || !json.Valid(trimmed) {
		s.problem(ctx, fasthttp.StatusBadRequest, errBadJSON.Error())
		return false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		s.problem(ctx, fasthttp.StatusBadRequest, errBadJSON.Error())
		return false
	}
	// Field names match exactly (the JSON decoders' case-insensitive
	// matching would accept "NAME"), and every unknown one is reported.
	if unknown := v.set(fields); len(unknown) > 0 {
		var errs []apiperf.FieldError
		for _, f := range unknown {
			errs = append(errs, apiperf.FieldError{Field: f, Message: "is not a known field"})
		}
		s.writeError(ctx, &apiperf.Error{Code: apiperf.EINVALID, Message: "the request has unknown fields", Fields: errs})
		return false
	}
	return true
}

func jsonContentType(ct []byte, mergePatch bool) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	return bytes.EqualFold(ct, []byte("application/json")) ||
		(mergePatch && bytes.EqualFold(ct, []byte("application/merge-patch+json")))
}

// validator collects field errors.
type validator struct{ errs []apiperf.FieldError }

func (v *validator) add(field, msg string) {
	v.errs = append(v.errs, apiperf.FieldError{Field: field, Message: msg})
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &apiperf.Error{Code: apiperf.EINVALID, Message: "the request has invalid fields", Fields: v.errs}
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// str decodes a JSON string field; required means absent or null is an error.
func (v *validator) str(field string, raw json.RawMessage, maxLen int, required bool) (string, bool) {
	if raw == nil || isNull(raw) {
		if required {
			v.add(field, "is required")
		}
		return "", false
	}
	if raw[0] != '"' {
		v.add(field, "must be a string")
		return "", false
	}
	var s string
	if hasLoneSurrogate(raw) || json.Unmarshal(raw, &s) != nil {
		v.add(field, "must be a valid UTF-8 string")
		return "", false
	}
	if n := utf8.RuneCountInString(s); n > maxLen {
		v.add(field, "must be at most "+strconv.Itoa(maxLen)+" characters")
		return "", false
	}
	return s, true
}

// hasLoneSurrogate reports a \u escape in the JSON string raw that names
// half of a UTF-16 surrogate pair without the other half. Such a string is
// not Unicode text; the decoders would turn the escape into U+FFFD.
func hasLoneSurrogate(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped character: a \\ never starts an escape
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r := hex4(raw[i+1:])
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return true
			}
			if low := hex4(raw[i+3:]); low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 is the value of four hex digits at the start of b, or -1.
func hex4(b []byte) int {
	if len(b) < 4 {
		return -1
	}
	n := 0
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int(c-'A'+10)
		default:
			return -1
		}
	}
	return n
}

// present reports whether a number field has a value to parse, noting
// an absent required field and a number sent as a string.
func (v *validator) present(field string, raw json.RawMessage, required bool) bool {
	switch {
	case raw == nil || isNull(raw):
		if required {
			v.add(field, "is required")
		}
		return false
	case raw[0] == '"':
		v.add(field, "must be a number, not a string")
		return false
	}
	return true
}

// integer decodes a JSON integer within [lo, hi].
func (v *validator) integer(field string, raw json.RawMessage, lo, hi int64, required bool) (int64, bool) {
	if !v.present(field, raw, required) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		if bytes.ContainsAny(raw, ".eE") && isNumber(raw) {
			v.add(field, "must be a whole number")
		} else if isNumber(raw) {
			v.add(field, "is out of range")
		} else {
			v.add(field, "must be a number")
		}
		return 0, false
	}
	if n < lo || n > hi {
		v.add(field, "must be between "+strconv.FormatInt(lo, 10)+" and "+strconv.FormatInt(hi, 10))
		return 0, false
	}
	return n, true
}

// money decodes a JSON number with at most two decimals within [0, max].
func (v *validator) money(field string, raw json.RawMessage, max apiperf.Money, required bool) (apiperf.Money, bool) {
	if !v.present(field, raw, required) {
		return 0, false
	}
	m, reason := apiperf.ParseMoney(string(raw), false)
	if reason != "" {
		v.add(field, reason)
		return 0, false
	}
	if m > max {
		v.add(field, "must be at most "+max.String())
		return 0, false
	}
	return m, true
}

func isNumber(raw []byte) bool {
	var f json.Number
	return json.Unmarshal(raw, &f) == nil && raw[0] != '"'
}

// productInput validates a full product representation: for create, where
// stock defaults to DefaultStock, and for replace, where it is required.
func productInput(b *productBody, stockRequired bool) (apiperf.ProductInput, error) {
	var v validator
	var in apiperf.ProductInput
	in.Name, _ = v.str("name", b.Name, apiperf.MaxNameLen, true)
	if b.Name != nil && !isNull(b.Name) && strings.TrimSpace(in.Name) == "" && len(v.errs) == 0 {
		v.add("name", "must not be empty")
	}
	if d, ok := v.str("description", b.Description, apiperf.MaxDescriptionLen, false); ok {
		in.Description = &d
	}
	in.Price, _ = v.money("price", b.Price, apiperf.MaxPrice, true)
	in.Stock = apiperf.DefaultStock
	if n, ok := v.integer("stock", b.Stock, 0, apiperf.MaxStock, stockRequired); ok {
		in.Stock = n
	}
	return in, v.err()
}

// productPatch validates a JSON merge patch of a product.
func productPatch(b *productBody) (apiperf.ProductPatch, error) {
	var v validator
	var p apiperf.ProductPatch
	if b.Name != nil {
		if isNull(b.Name) {
			v.add("name", "cannot be null")
		} else if s, ok := v.str("name", b.Name, apiperf.MaxNameLen, true); ok {
			if strings.TrimSpace(s) == "" {
				v.add("name", "must not be empty")
			}
			p.Name = &s
		}
	}
	if b.Description != nil {
		if isNull(b.Description) {
			p.ClearDescription = true
		} else if s, ok := v.str("description", b.Description, apiperf.MaxDescriptionLen, true); ok {
			p.Description = &s
		}
	}
	if b.Price != nil {
		if isNull(b.Price) {
			v.add("price", "cannot be null")
		} else if m, ok := v.money("price", b.Price, apiperf.MaxPrice, true); ok {
			p.Price = &m
		}
	}
	if b.Stock != nil {
		if isNull(b.Stock) {
			v.add("stock", "cannot be null")
		} else if n, ok := v.integer("stock", b.Stock, 0, apiperf.MaxStock, true); ok {
			p.Stock = &n
		}
	}
	return p, v.err()
}

func orderInput(b *orderBody) (apiperf.OrderInput, error) {
	var v validator
	var in apiperf.OrderInput
	in.ProductID, _ = v.integer("product_id", b.ProductID, 1, 1<<53, true)
	in.Quantity, _ = v.integer("quantity", b.Quantity, 1, apiperf.MaxQuantity, true)
	return in, v.err()
}

func orderStatus(b *statusBody) (apiperf.OrderStatus, error) {
	var v validator
	s, ok := v.str("status", b.Status, 32, true)
	if ok && !apiperf.OrderStatus(s).Valid() {
		v.add("status", "must be one of pending, paid, shipped, delivered, cancelled")
	}
	return apiperf.OrderStatus(s), v.err()
}
