package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/server"
)

// The tests in this file keep openapi.json true: the document and the router
// must list the same routes, every reference must resolve, the limits in the
// schemas must be the domain's, and every response the handlers give in a
// full exchange must be one the document describes, down to its content
// type, required headers and body schema.

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadDocument parses openapi.json with numbers kept exact.
func loadDocument(tb testing.TB) map[string]any {
	tb.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		tb.Fatal(err)
	}
	return parseDocument(tb, raw)
}

func parseDocument(tb testing.TB, raw []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		tb.Fatalf("openapi.json is not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		tb.Fatalf("openapi.json has content after the document (%v)", err)
	}
	return doc
}

// resolveRef follows a local JSON pointer reference such as
// "#/components/schemas/Product".
func resolveRef(doc map[string]any, ref string) (any, error) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("%q is not a local reference", ref)
	}
	var cur any = doc
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("%q: no %q", ref, tok)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("%q: bad index %q", ref, tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%q: %q is inside a scalar", ref, tok)
		}
	}
	return cur, nil
}

// deref returns v's object, following $ref chains.
func deref(tb testing.TB, doc map[string]any, v any) map[string]any {
	tb.Helper()
	for range 32 {
		m, ok := v.(map[string]any)
		if !ok {
			tb.Fatalf("expected an object, got %T", v)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		next, err := resolveRef(doc, ref)
		if err != nil {
			tb.Fatal(err)
		}
		v = next
	}
	tb.Fatal("reference chain longer than 32")
	return nil
}

// documentedOperations returns every documented method and path, as router routes.
func documentedOperations(doc map[string]any) map[server.Route]map[string]any {
	ops := map[server.Route]map[string]any{}
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		pi, _ := item.(map[string]any)
		for _, m := range httpMethods {
			if op, ok := pi[m].(map[string]any); ok {
				ops[server.Route{Method: strings.ToUpper(m), Path: path}] = op
			}
		}
	}
	return ops
}

// documentedOperation returns the documented operation of method and path template.
func documentedOperation(tb testing.TB, doc map[string]any, method, path string) map[string]any {
	tb.Helper()
	op, ok := documentedOperations(doc)[server.Route{Method: method, Path: path}]
	if !ok {
		tb.Fatalf("%s %s is not documented", method, path)
	}
	return op
}

// newDocServer builds a server over an in-memory store, with a /metrics
// handler so that every optional route is registered.
func newDocServer(tb testing.TB, mutate func(*server.Config)) (*server.Server, *memStore) {
	tb.Helper()
	st := newMemStore()
	cfg := server.Config{
		Products:  st,
		Orders:    st,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		AccessLog: "off",
		Metrics: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
			ctx.SetBodyString("# no metrics\n")
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return server.New(cfg), st
}

// docRequest is one request driven through the handler without a socket.
type docRequest struct {
	method, path string
	// template is the documented path the request matches.
	template    string
	contentType string
	body        string
	header      map[string]string
}

// serve runs req through h and returns a copy of the response.
func serve(h fasthttp.RequestHandler, req docRequest) *fasthttp.Response {
	var r fasthttp.Request
	r.Header.SetMethod(req.method)
	r.SetRequestURI(req.path)
	if req.contentType != "" {
		r.Header.SetContentType(req.contentType)
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	if req.body != "" {
		r.SetBodyString(req.body)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&r, nil, nil)
	h(&ctx)
	resp := new(fasthttp.Response)
	ctx.Response.CopyTo(resp)
	return resp
}

// checkResponse fails t unless resp is documented for req's operation: its
// status, its content type, its required headers and its body's schema.
func checkResponse(t *testing.T, doc map[string]any, req docRequest, resp *fasthttp.Response) {
	t.Helper()
	op, ok := documentedOperations(doc)[server.Route{Method: req.method, Path: req.template}]
	if !ok {
		// A method the path lacks: the answer is the path's 405, and Allow
		// lists exactly the documented methods (and OPTIONS, which the
		// router answers itself).
		allow := []string{"OPTIONS"}
		for r, o := range documentedOperations(doc) {
			if r.Path == req.template {
				allow = append(allow, r.Method)
				op = o
			}
		}
		sort.Strings(allow)
		if op == nil || resp.StatusCode() != fasthttp.StatusMethodNotAllowed {
			t.Errorf("%s %s answered %d and is not documented", req.method, req.template, resp.StatusCode())
			return
		}
		if got, want := string(resp.Header.Peek("Allow")), strings.Join(allow, ", "); got != want {
			t.Errorf("%s %s: Allow is %q, the document says %q", req.method, req.path, got, want)
		}
	}
	status := strconv.Itoa(resp.StatusCode())
	rv, ok := op["responses"].(map[string]any)[status]
	if !ok {
		t.Errorf("%s %s answered %s, which %s does not document; body %s",
			req.method, req.path, status, op["operationId"], resp.Body())
		return
	}
	r := deref(t, doc, rv)
	headers, _ := r["headers"].(map[string]any)
	for name, hv := range headers {
		h := deref(t, doc, hv)
		got := resp.Header.Peek(name)
		if len(got) == 0 {
			if h["required"] == true {
				t.Errorf("%s %s %s: required header %s is missing", req.method, req.path, status, name)
			}
			continue
		}
		if s, ok := h["schema"]; ok {
			for _, e := range validateParam(doc, s, string(got)) {
				t.Errorf("%s %s %s: header %s=%q: %s", req.method, req.path, status, name, got, e)
			}
		}
	}
	content, _ := r["content"].(map[string]any)
	if len(content) == 0 {
		if len(resp.Body()) != 0 {
			t.Errorf("%s %s %s: documented without a body, got %q", req.method, req.path, status, resp.Body())
		}
		return
	}
	mt, _, err := mime.ParseMediaType(string(resp.Header.ContentType()))
	if err != nil {
		t.Errorf("%s %s %s: bad Content-Type %q", req.method, req.path, status, resp.Header.ContentType())
		return
	}
	media, ok := content[mt].(map[string]any)
	if !ok {
		t.Errorf("%s %s %s: Content-Type %s is not documented (%v)", req.method, req.path, status, mt, sortedKeys(content))
		return
	}
	if !strings.HasSuffix(mt, "json") {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(resp.Body()))
	dec.UseNumber()
	var body any
	if err := dec.Decode(&body); err != nil {
		t.Errorf("%s %s %s: body is not JSON: %v", req.method, req.path, status, err)
		return
	}
	for _, e := range validateSchema(doc, media["schema"], body, "body") {
		t.Errorf("%s %s %s: %s; body %s", req.method, req.path, status, e, resp.Body())
	}
	if mt == "application/problem+json" {
		if got, want := body.(map[string]any)["request_id"], string(resp.Header.Peek("X-Request-ID")); got != want {
			t.Errorf("%s %s %s: problem request_id %v, X-Request-ID %q", req.method, req.path, status, got, want)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// knownKeywords are the JSON Schema keywords validate understands or that
// do not constrain values. A keyword outside this set fails the test, so
// the document cannot rely on a rule the test silently ignores.
var knownKeywords = map[string]bool{
	"$ref": true, "type": true, "enum": true, "const": true, "minimum": true, "maximum": true,
	"multipleOf": true, "minLength": true, "maxLength": true, "pattern": true, "format": true,
	"required": true, "properties": true, "additionalProperties": true, "items": true,
	"description": true, "examples": true, "readOnly": true, "default": true, "title": true,
}

// validateSchema checks v against the subset of JSON Schema 2020-12 the document
// uses, and returns one message per violation.
func validateSchema(doc map[string]any, schema any, v any, at string) []string {
	s, ok := schema.(map[string]any)
	if !ok {
		return []string{at + ": schema is not an object"}
	}
	if ref, ok := s["$ref"].(string); ok {
		target, err := resolveRef(doc, ref)
		if err != nil {
			return []string{at + ": " + err.Error()}
		}
		return validateSchema(doc, target, v, at)
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	for k := range s {
		if !knownKeywords[k] {
			fail("the test's validator does not know keyword %q", k)
		}
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return hasType(v, t) }) {
			fail("%v is not of type %v", v, types)
			return errs
		}
	}
	if e, ok := s["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return equalJSON(x, v) }) {
		fail("%v is not one of %v", v, e)
	}
	if c, ok := s["const"]; ok && !equalJSON(c, v) {
		fail("%v is not %v", v, c)
	}
	switch v := v.(type) {
	case json.Number:
		n := rat(v)
		if m, ok := s["minimum"].(json.Number); ok && n.Cmp(rat(m)) < 0 {
			fail("%s is below the minimum %s", v, m)
		}
		if m, ok := s["maximum"].(json.Number); ok && n.Cmp(rat(m)) > 0 {
			fail("%s is above the maximum %s", v, m)
		}
		if m, ok := s["multipleOf"].(json.Number); ok && !new(big.Rat).Quo(n, rat(m)).IsInt() {
			fail("%s is not a multiple of %s", v, m)
		}
	case string:
		n := utf8.RuneCountInString(v)
		if m, ok := s["minLength"].(json.Number); ok && int64(n) < intOf(m) {
			fail("%q is shorter than %s", v, m)
		}
		if m, ok := s["maxLength"].(json.Number); ok && int64(n) > intOf(m) {
			fail("%d characters, more than %s", n, m)
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			fail("%q does not match %s", v, p)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				fail("%q is not an RFC 3339 date-time", v)
			}
		}
	case map[string]any:
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := v[r.(string)]; !ok {
					fail("required property %q is missing", r)
				}
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, pv := range v {
			if ps, ok := props[k]; ok {
				errs = append(errs, validateSchema(doc, ps, pv, at+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("property %q is not allowed", k)
				}
			case map[string]any:
				errs = append(errs, validateSchema(doc, ap, pv, at+"."+k)...)
			}
		}
	case []any:
		if items, ok := s["items"]; ok {
			for i, x := range v {
				errs = append(errs, validateSchema(doc, items, x, at+"["+strconv.Itoa(i)+"]")...)
			}
		}
	}
	return errs
}

// validateParam checks a header or query parameter's text against its
// schema, converting it to the schema's scalar type first.
func validateParam(doc map[string]any, schema any, text string) []string {
	s, _ := schema.(map[string]any)
	if ref, ok := s["$ref"].(string); ok {
		target, err := resolveRef(doc, ref)
		if err != nil {
			return []string{err.Error()}
		}
		return validateParam(doc, target, text)
	}
	var v any = text
	if s["type"] == "integer" || s["type"] == "number" {
		n := json.Number(text)
		if _, ok := new(big.Rat).SetString(text); !ok || strings.ContainsAny(text, "/+ ") || text == "" {
			return []string{fmt.Sprintf("%q is not a number", text)}
		}
		v = n
	}
	return validateSchema(doc, s, v, "parameter")
}

func hasType(v any, t string) bool {
	switch v := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case json.Number:
		return t == "number" || (t == "integer" && rat(v).IsInt())
	case []any:
		return t == "array"
	case map[string]any:
		return t == "object"
	}
	return false
}

func equalJSON(a, b any) bool {
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		return rat(an).Cmp(rat(bn)) == 0
	}
	return reflect.DeepEqual(a, b)
}

func rat(n json.Number) *big.Rat {
	r, ok := new(big.Rat).SetString(string(n))
	if !ok {
		panic("bad number " + string(n))
	}
	return r
}

func intOf(n json.Number) int64 {
	i, err := n.Int64()
	if err != nil {
		panic(err)
	}
	return i
}

func TestOpenAPI_Document(t *testing.T) {
	doc := loadDocument(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi is %v, want 3.1.0", doc["openapi"])
	}
	info, _ := doc["info"].(map[string]any)
	if info["title"] == nil || info["version"] == nil {
		t.Errorf("info needs title and version: %v", info)
	}
	if got, want := fmt.Sprint(doc["servers"]), "[map[url:/]]"; got != want {
		t.Errorf("servers are %s, want %s", got, want)
	}
}

func TestOpenAPI_RoutesDocumented(t *testing.T) {
	doc := loadDocument(t)
	srv, _ := newDocServer(t, nil)
	ops := documentedOperations(doc)
	seen := map[server.Route]bool{}
	for _, r := range srv.Routes() {
		if seen[r] {
			t.Errorf("%s %s is registered twice", r.Method, r.Path)
		}
		seen[r] = true
		if _, ok := ops[r]; !ok {
			t.Errorf("%s %s is registered but not documented", r.Method, r.Path)
		}
	}
	for r := range ops {
		if !seen[r] {
			t.Errorf("%s %s is documented but not registered", r.Method, r.Path)
		}
	}
	// A server without a metrics handler must not register /metrics: the
	// document then describes a route that answers 404, which its
	// description announces.
	noMetrics, _ := newDocServer(t, func(c *server.Config) { c.Metrics = nil })
	if slices.Contains(noMetrics.Routes(), server.Route{Method: "GET", Path: "/metrics"}) {
		t.Error("/metrics is registered without a metrics handler")
	}
	if len(seen) < 20 {
		t.Errorf("only %d routes registered; the route list looks wrong", len(seen))
	}
}

func TestOpenAPI_RefsResolve(t *testing.T) {
	doc := loadDocument(t)
	n := 0
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				n++
				if _, err := resolveRef(doc, ref); err != nil {
					t.Errorf("%s: %v", at, err)
				}
			}
			for k, x := range v {
				walk(x, at+"/"+k)
			}
		case []any:
			for i, x := range v {
				walk(x, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(doc, "#")
	if n < 100 {
		t.Errorf("only %d references; the walk looks broken", n)
	}
	// Every component is used, so none can drift out of date unnoticed.
	raw, _ := os.ReadFile("openapi.json")
	for kind, v := range doc["components"].(map[string]any) {
		for name := range v.(map[string]any) {
			if kind == "securitySchemes" {
				continue
			}
			if !bytes.Contains(raw, []byte(`"#/components/`+kind+`/`+name+`"`)) {
				t.Errorf("components/%s/%s is never referenced", kind, name)
			}
		}
	}
}

func TestOpenAPI_Operations(t *testing.T) {
	doc := loadDocument(t)
	ids := map[string]string{}
	tmpl := regexp.MustCompile(`\{([^}]+)\}`)
	for r, op := range documentedOperations(doc) {
		name := r.Method + " " + r.Path
		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", name)
		} else if prev, dup := ids[id]; dup {
			t.Errorf("operationId %s is used by %s and %s", id, prev, name)
		}
		ids[id] = name

		// Path parameters and the template name the same variables.
		want := map[string]bool{}
		for _, m := range tmpl.FindAllStringSubmatch(r.Path, -1) {
			want[m[1]] = true
		}
		params, _ := op["parameters"].([]any)
		for _, pv := range params {
			p := deref(t, doc, pv)
			if p["in"] != "path" {
				continue
			}
			if !want[p["name"].(string)] || p["required"] != true {
				t.Errorf("%s: path parameter %v is not a required variable of the template", name, p["name"])
			}
			delete(want, p["name"].(string))
		}
		for v := range want {
			t.Errorf("%s: path variable %s is not documented", name, v)
		}

		// The statuses every API route can answer.
		responses := op["responses"].(map[string]any)
		need := []string{"405"}
		api := strings.HasPrefix(r.Path, "/api/v1/") || strings.HasPrefix(r.Path, "/products") || strings.HasPrefix(r.Path, "/orders")
		write := r.Method != "GET"
		if api {
			need = append(need, "429", "500", "503")
		}
		if write {
			need = append(need, "401")
			if fmt.Sprint(op["security"]) != "[map[bearerAuth:[]] map[]]" {
				t.Errorf("%s: security is %v, want optional bearerAuth", name, op["security"])
			}
		} else if sec, ok := op["security"].([]any); !ok || len(sec) != 0 {
			t.Errorf("%s: reads need no credentials, security is %v", name, op["security"])
		}
		if op["requestBody"] != nil {
			need = append(need, "400", "413", "415", "422")
		}
		if strings.Contains(r.Path, "{id}") {
			need = append(need, "404", "422")
		}
		for _, s := range need {
			if _, ok := responses[s]; !ok {
				t.Errorf("%s does not document %s", name, s)
			}
		}
		// Errors are problem details, except /readyz's 503, which reports
		// each check.
		for status, rv := range responses {
			if status < "400" || name == "GET /readyz" {
				continue
			}
			content, _ := deref(t, doc, rv)["content"].(map[string]any)
			if len(content) != 1 || content["application/problem+json"] == nil {
				t.Errorf("%s %s: an error must be application/problem+json, got %v", name, status, sortedKeys(content))
			}
		}
	}
}

// The root aliases run the same handlers, so their operations must equal
// the canonical ones except for their names.
func TestOpenAPI_RootAliases(t *testing.T) {
	doc := loadDocument(t)
	ops := documentedOperations(doc)
	n := 0
	for r, op := range ops {
		if !strings.HasPrefix(r.Path, "/api/v1/") {
			continue
		}
		alias, ok := ops[server.Route{Method: r.Method, Path: strings.TrimPrefix(r.Path, "/api/v1")}]
		if !ok {
			t.Errorf("%s %s has no documented root alias", r.Method, r.Path)
			continue
		}
		n++
		if got, want := alias["operationId"], op["operationId"].(string)+"RootAlias"; got != want {
			t.Errorf("root alias of %s %s is named %v, want %s", r.Method, r.Path, got, want)
		}
		a, c := map[string]any{}, map[string]any{}
		for k, v := range alias {
			a[k] = v
		}
		for k, v := range op {
			c[k] = v
		}
		for _, k := range []string{"operationId", "tags", "description"} {
			delete(a, k)
			delete(c, k)
		}
		if !reflect.DeepEqual(a, c) {
			t.Errorf("root alias of %s %s differs from it", r.Method, r.Path)
		}
	}
	if n != 11 {
		t.Errorf("%d aliased operations, want 11", n)
	}
}

// schemaProperty returns a schema's property, following references.
func schemaProperty(tb testing.TB, doc map[string]any, schema, name string) map[string]any {
	tb.Helper()
	s := deref(tb, doc, map[string]any{"$ref": "#/components/schemas/" + schema})
	p, ok := s["properties"].(map[string]any)[name]
	if !ok {
		tb.Fatalf("schema %s has no property %s", schema, name)
	}
	return deref(tb, doc, p)
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(v any) []string {
	var out []string
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func TestOpenAPI_SchemasMatchDomain(t *testing.T) {
	doc := loadDocument(t)
	for schema, v := range map[string]any{
		"Product": apiperf.Product{}, "Order": apiperf.Order{}, "Problem": server.Problem{},
		"FieldError": apiperf.FieldError{},
	} {
		s := deref(t, doc, map[string]any{"$ref": "#/components/schemas/" + schema})
		if got, want := sortedKeys(s["properties"].(map[string]any)), jsonFields(v); !slices.Equal(got, want) {
			t.Errorf("%s properties are %v, the Go type has %v", schema, got, want)
		}
	}
	num := func(schema, prop, kw string) string {
		v, _ := schemaProperty(t, doc, schema, prop)[kw].(json.Number)
		return string(v)
	}
	checks := []struct{ schema, prop, kw, want string }{
		{"ProductCreate", "name", "maxLength", strconv.Itoa(apiperf.MaxNameLen)},
		{"ProductPatch", "name", "maxLength", strconv.Itoa(apiperf.MaxNameLen)},
		{"Product", "name", "maxLength", strconv.Itoa(apiperf.MaxNameLen)},
		{"ProductCreate", "description", "maxLength", strconv.Itoa(apiperf.MaxDescriptionLen)},
		{"ProductPatch", "description", "maxLength", strconv.Itoa(apiperf.MaxDescriptionLen)},
		{"ProductCreate", "stock", "maximum", strconv.Itoa(apiperf.MaxStock)},
		{"ProductPatch", "stock", "maximum", strconv.Itoa(apiperf.MaxStock)},
		{"Product", "stock", "maximum", strconv.Itoa(apiperf.MaxStock)},
		{"ProductCreate", "stock", "default", strconv.Itoa(apiperf.DefaultStock)},
		{"ProductCreate", "price", "maximum", apiperf.MaxPrice.String()},
		{"Order", "total", "maximum", apiperf.MaxTotal.String()},
		{"OrderCreate", "quantity", "maximum", strconv.Itoa(apiperf.MaxQuantity)},
		{"Order", "quantity", "maximum", strconv.Itoa(apiperf.MaxQuantity)},
		{"OrderCreate", "product_id", "minimum", "1"},
	}
	for _, c := range checks {
		if got := num(c.schema, c.prop, c.kw); got != c.want {
			t.Errorf("%s.%s %s is %s, the domain says %s", c.schema, c.prop, c.kw, got, c.want)
		}
	}
	enum := deref(t, doc, map[string]any{"$ref": "#/components/schemas/OrderStatus"})["enum"].([]any)
	var got []string
	for _, e := range enum {
		if !apiperf.OrderStatus(e.(string)).Valid() {
			t.Errorf("status %v is not valid in the domain", e)
		}
		got = append(got, e.(string))
	}
	for _, s := range []apiperf.OrderStatus{apiperf.StatusPending, apiperf.StatusPaid, apiperf.StatusShipped,
		apiperf.StatusDelivered, apiperf.StatusCancelled} {
		if !slices.Contains(got, string(s)) {
			t.Errorf("status %s is missing from the enum", s)
		}
	}
}

// Every example in the document satisfies its own schema.
func TestOpenAPI_ExamplesValid(t *testing.T) {
	doc := loadDocument(t)
	n := 0
	for name, sv := range doc["components"].(map[string]any)["schemas"].(map[string]any) {
		s := sv.(map[string]any)
		ex, _ := s["examples"].([]any)
		for _, e := range ex {
			n++
			for _, msg := range validateSchema(doc, s, e, name) {
				t.Error(msg)
			}
		}
	}
	if n == 0 {
		t.Error("no examples found")
	}
	// And the validator refuses what it should, so the checks above and
	// below are not vacuous.
	bad := map[string]any{"name": "", "price": json.Number("1.005"), "stock": json.Number("-1"), "extra": true}
	if errs := validateSchema(doc, map[string]any{"$ref": "#/components/schemas/ProductCreate"}, bad, "bad"); len(errs) != 5 {
		t.Errorf("validator found %d problems in a body with 5: %v", len(errs), errs)
	}
}

// TestOpenAPI_ResponsesMatchDocument runs the life of a product and its
// orders through both prefixes and checks every response against the
// document.
func TestOpenAPI_ResponsesMatchDocument(t *testing.T) {
	doc := loadDocument(t)
	for _, prefix := range []string{"/api/v1", ""} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			srv, st := newDocServer(t, nil)
			h := srv.Handler()
			exchange := func(want int, req docRequest) *fasthttp.Response {
				t.Helper()
				req.template = prefix + req.template
				req.path = prefix + req.path
				resp := serve(h, req)
				if resp.StatusCode() != want {
					t.Errorf("%s %s: status %d, want %d; body %s", req.method, req.path, resp.StatusCode(), want, resp.Body())
				}
				checkResponse(t, doc, req, resp)
				return resp
			}
			const js = "application/json"

			r := exchange(201, docRequest{method: "POST", path: "/products", template: "/products", contentType: js,
				body: `{"name":"cup","description":"white","price":12.5}`})
			if got, want := string(r.Header.Peek("Location")), prefix+"/products/1"; got != want {
				t.Errorf("Location %q, want %q", got, want)
			}
			exchange(201, docRequest{method: "POST", path: "/products", template: "/products", contentType: js,
				body: `{"name":"saucer","description":null,"price":3,"stock":0}`})
			r = exchange(200, docRequest{method: "GET", path: "/products/1", template: "/products/{id}"})
			etag := string(r.Header.Peek("ETag"))
			exchange(304, docRequest{method: "GET", path: "/products/1", template: "/products/{id}",
				header: map[string]string{"If-None-Match": etag}})
			exchange(404, docRequest{method: "GET", path: "/products/99", template: "/products/{id}"})
			exchange(422, docRequest{method: "GET", path: "/products/0", template: "/products/{id}"})
			exchange(412, docRequest{method: "PUT", path: "/products/1", template: "/products/{id}", contentType: js,
				body: `{"name":"cup","price":13,"stock":100}`, header: map[string]string{"If-Match": `"nope"`}})
			exchange(428, docRequest{method: "PUT", path: "/products/1", template: "/products/{id}", contentType: js,
				body: `{"name":"cup","price":13,"stock":90}`})
			exchange(200, docRequest{method: "PUT", path: "/products/1", template: "/products/{id}", contentType: js,
				body: `{"name":"cup","price":13,"stock":100}`, header: map[string]string{"If-Match": etag}})
			exchange(404, docRequest{method: "PUT", path: "/products/99", template: "/products/{id}", contentType: js,
				body: `{"name":"cup","price":13,"stock":100}`})
			exchange(428, docRequest{method: "PATCH", path: "/products/1", template: "/products/{id}",
				contentType: "application/merge-patch+json", body: `{"description":null,"stock":10}`})
			exchange(200, docRequest{method: "PATCH", path: "/products/1", template: "/products/{id}",
				contentType: "application/merge-patch+json", body: `{"description":null,"stock":100}`})
			exchange(415, docRequest{method: "PATCH", path: "/products/1", template: "/products/{id}",
				contentType: "text/plain", body: `{}`})
			exchange(400, docRequest{method: "POST", path: "/products", template: "/products", contentType: js, body: `{"name":`})
			r = exchange(422, docRequest{method: "POST", path: "/products", template: "/products", contentType: js,
				body: `{"name":"","price":1.001,"stock":-1}`})
			if n := bytes.Count(r.Body(), []byte(`"field"`)); n != 3 {
				t.Errorf("422 lists %d fields, want 3: %s", n, r.Body())
			}
			r = exchange(200, docRequest{method: "GET", path: "/products?limit=1", template: "/products"})
			var page struct {
				NextCursor string `json:"next_cursor"`
			}
			if err := json.Unmarshal(r.Body(), &page); err != nil || page.NextCursor == "" {
				t.Fatalf("first page has no next_cursor: %s", r.Body())
			}
			exchange(200, docRequest{method: "GET", path: "/products?limit=1&cursor=" + page.NextCursor, template: "/products"})
			exchange(422, docRequest{method: "GET", path: "/products?limit=101", template: "/products"})

			r = exchange(201, docRequest{method: "POST", path: "/orders", template: "/orders", contentType: js,
				body: `{"product_id":1,"quantity":2}`, header: map[string]string{"Idempotency-Key": "k1"}})
			first := string(r.Body())
			r = exchange(201, docRequest{method: "POST", path: "/orders", template: "/orders", contentType: js,
				body: `{"product_id":1, "quantity":2}`, header: map[string]string{"Idempotency-Key": "k1"}})
			if string(r.Header.Peek("Idempotent-Replayed")) != "true" || string(r.Body()) != first {
				t.Errorf("retry was not a replay: %s", r.Body())
			}
			exchange(422, docRequest{method: "POST", path: "/orders", template: "/orders", contentType: js,
				body: `{"product_id":1,"quantity":3}`, header: map[string]string{"Idempotency-Key": "k1"}})
			exchange(400, docRequest{method: "POST", path: "/orders", template: "/orders", contentType: js,
				body: `{"product_id":1,"quantity":3}`, header: map[string]string{"Idempotency-Key": "no spaces please"}})
			exchange(409, docRequest{method: "POST", path: "/orders", template: "/orders", contentType: js,
				body: `{"product_id":2,"quantity":1}`})
			exchange(404, docRequest{method: "POST", path: "/orders", template: "/orders", contentType: js,
				body: `{"product_id":99,"quantity":1}`})
			exchange(201, docRequest{method: "POST", path: "/orders", template: "/orders", contentType: js,
				body: `{"product_id":1,"quantity":1}`})
			exchange(200, docRequest{method: "GET", path: "/orders/1", template: "/orders/{id}"})
			exchange(404, docRequest{method: "GET", path: "/orders/99", template: "/orders/{id}"})
			exchange(200, docRequest{method: "GET", path: "/orders?status=pending&product_id=1&limit=1", template: "/orders"})
			exchange(422, docRequest{method: "GET", path: "/orders?status=lost", template: "/orders"})
			exchange(200, docRequest{method: "PATCH", path: "/orders/1", template: "/orders/{id}", contentType: js,
				body: `{"status":"paid"}`})
			exchange(409, docRequest{method: "PATCH", path: "/orders/1", template: "/orders/{id}", contentType: js,
				body: `{"status":"pending"}`})
			exchange(409, docRequest{method: "DELETE", path: "/products/1", template: "/products/{id}"})
			exchange(204, docRequest{method: "DELETE", path: "/orders/1", template: "/orders/{id}"})
			exchange(204, docRequest{method: "DELETE", path: "/orders/2", template: "/orders/{id}"})
			exchange(404, docRequest{method: "DELETE", path: "/orders/2", template: "/orders/{id}"})
			exchange(204, docRequest{method: "DELETE", path: "/products/1", template: "/products/{id}"})
			exchange(404, docRequest{method: "DELETE", path: "/products/1", template: "/products/{id}"})
			exchange(405, docRequest{method: "PUT", path: "/orders/1", template: "/orders/{id}", contentType: js, body: `{}`})

			st.fail(errors.New("disk on fire"))
			r = exchange(500, docRequest{method: "GET", path: "/products/2", template: "/products/{id}"})
			if bytes.Contains(r.Body(), []byte("fire")) {
				t.Errorf("a 500 leaks its cause: %s", r.Body())
			}
			st.fail(apiperf.Errorf(apiperf.EUNAVAILABLE, "the database is unavailable"))
			exchange(503, docRequest{method: "GET", path: "/orders", template: "/orders"})
		})
	}
}

func TestOpenAPI_ResponsesMatchDocument_AuthAndLimits(t *testing.T) {
	doc := loadDocument(t)
	lim := &stubLimiter{}
	srv, _ := newDocServer(t, func(c *server.Config) {
		c.APIKeys = []string{"secret"}
		c.Limiter = lim
	})
	h := srv.Handler()
	run := func(want int, req docRequest) *fasthttp.Response {
		t.Helper()
		resp := serve(h, req)
		if resp.StatusCode() != want {
			t.Errorf("%s %s: status %d, want %d; body %s", req.method, req.path, resp.StatusCode(), want, resp.Body())
		}
		checkResponse(t, doc, req, resp)
		return resp
	}
	body := `{"name":"cup","price":1}`
	run(401, docRequest{method: "POST", path: "/api/v1/products", template: "/api/v1/products", contentType: "application/json", body: body})
	r := run(201, docRequest{method: "POST", path: "/products", template: "/products", contentType: "application/json", body: body,
		header: map[string]string{"Authorization": "Bearer secret"}})
	if len(r.Header.Peek("RateLimit")) == 0 {
		t.Error("a limited route answered without RateLimit")
	}
	run(200, docRequest{method: "GET", path: "/api/v1/products/1", template: "/api/v1/products/{id}"})
	lim.set(false, nil)
	run(429, docRequest{method: "GET", path: "/api/v1/products/1", template: "/api/v1/products/{id}"})
	lim.set(true, apiperf.Errorf(apiperf.EUNAVAILABLE, "the rate limiter is unavailable"))
	run(503, docRequest{method: "DELETE", path: "/products/1", template: "/products/{id}",
		header: map[string]string{"Authorization": "Bearer secret"}})
	lim.set(true, nil)
	run(200, docRequest{method: "GET", path: "/healthz", template: "/healthz"})
	run(200, docRequest{method: "GET", path: "/readyz", template: "/readyz"})
	run(200, docRequest{method: "GET", path: "/metrics", template: "/metrics"})
	run(405, docRequest{method: "POST", path: "/healthz", template: "/healthz"})

	down, _ := newDocServer(t, func(c *server.Config) {
		c.Ready = []server.Check{{Name: "database", Pinger: pingerFunc(func(context.Context) error { return errors.New("down") })}}
	})
	req := docRequest{method: "GET", path: "/readyz", template: "/readyz"}
	resp := serve(down.Handler(), req)
	if resp.StatusCode() != 503 {
		t.Errorf("/readyz with a failing check: %d", resp.StatusCode())
	}
	checkResponse(t, doc, req, resp)
}

// TestOpenAPI_ValidationMatchesSchema sends values at and beyond each limit
// the document states and checks that the server accepts exactly the ones
// the schema allows.
func TestOpenAPI_ValidationMatchesSchema(t *testing.T) {
	doc := loadDocument(t)
	num := func(schema, prop, kw string) json.Number {
		return schemaProperty(t, doc, schema, prop)[kw].(json.Number)
	}
	plus := func(n json.Number, d string) string {
		return strings.TrimSuffix(strings.TrimRight(new(big.Rat).Add(rat(n), rat(json.Number(d))).FloatString(2), "0"), ".")
	}
	quote := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	nameMax := int(intOf(num("ProductCreate", "name", "maxLength")))
	descMax := int(intOf(num("ProductCreate", "description", "maxLength")))
	priceMax, stockMax := num("ProductCreate", "price", "maximum"), num("ProductCreate", "stock", "maximum")
	qtyMax, pidMax := num("OrderCreate", "quantity", "maximum"), num("OrderCreate", "product_id", "maximum")

	products := []string{
		`{"name":` + quote(strings.Repeat("é", nameMax)) + `,"price":1}`,
		`{"name":` + quote(strings.Repeat("é", nameMax+1)) + `,"price":1}`,
		`{"name":"","price":1}`,
		`{"name":"  ","price":1}`,
		`{"price":1}`,
		`{"name":null,"price":1}`,
		`{"name":"a"}`,
		`{"name":"a","price":` + string(priceMax) + `}`,
		`{"name":"a","price":` + plus(priceMax, "0.01") + `}`,
		`{"name":"a","price":0}`,
		`{"name":"a","price":-0.01}`,
		`{"name":"a","price":0.001}`,
		`{"name":"a","price":"1"}`,
		`{"name":"a","price":1,"description":` + quote(strings.Repeat("ß", descMax)) + `}`,
		`{"name":"a","price":1,"description":` + quote(strings.Repeat("ß", descMax+1)) + `}`,
		`{"name":"a","price":1,"description":null}`,
		`{"name":"a","price":1,"description":5}`,
		`{"name":"a","price":1,"stock":` + string(stockMax) + `}`,
		`{"name":"a","price":1,"stock":` + plus(stockMax, "1") + `}`,
		`{"name":"a","price":1,"stock":0}`,
		`{"name":"a","price":1,"stock":-1}`,
		`{"name":"a","price":1,"stock":null}`,
		`{"name":"a","price":1,"colour":"red"}`,
	}
	patches := []string{
		`{}`,
		`{"name":"b"}`,
		`{"name":null}`,
		`{"name":""}`,
		`{"description":null}`,
		`{"price":null}`,
		`{"price":` + plus(priceMax, "0.01") + `}`,
		`{"stock":null}`,
		`{"stock":` + string(stockMax) + `}`,
		`{"version":3}`,
	}
	orders := []string{
		`{"product_id":1,"quantity":1}`,
		`{"product_id":1,"quantity":0}`,
		`{"product_id":1,"quantity":` + string(qtyMax) + `}`,
		`{"product_id":1,"quantity":` + plus(qtyMax, "1") + `}`,
		`{"product_id":0,"quantity":1}`,
		`{"product_id":` + plus(pidMax, "1") + `,"quantity":1}`,
		`{"product_id":1}`,
		`{"quantity":1}`,
		`{"product_id":1,"quantity":1,"note":"x"}`,
	}
	var statuses []string
	for _, e := range deref(t, doc, map[string]any{"$ref": "#/components/schemas/OrderStatus"})["enum"].([]any) {
		statuses = append(statuses, `{"status":"`+e.(string)+`"}`)
	}
	statuses = append(statuses, `{"status":"lost"}`, `{"status":null}`, `{}`, `{"status":"paid","x":1}`)

	// accepted reports whether the server got past validation: anything
	// but a 422 (the store may still refuse, e.g. 404 for a product id
	// nobody created, or 409 for a transition).
	type cas struct {
		method, path, schema, ct string
		bodies                   []string
	}
	cases := []cas{
		{"POST", "/api/v1/products", "ProductCreate", "application/json", products},
		{"PUT", "/api/v1/products/1", "ProductReplace", "application/json", products},
		{"PATCH", "/api/v1/products/1", "ProductPatch", "application/merge-patch+json", patches},
		{"POST", "/api/v1/orders", "OrderCreate", "application/json", orders},
		{"PATCH", "/api/v1/orders/1", "OrderStatusPatch", "application/json", statuses},
	}
	accepted, refused := 0, 0
	for _, c := range cases {
		for _, body := range c.bodies {
			srv, st := newDocServer(t, nil)
			st.seed()
			resp := serve(srv.Handler(), docRequest{method: c.method, path: c.path, contentType: c.ct, body: body})
			dec := json.NewDecoder(strings.NewReader(body))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			errs := validateSchema(doc, map[string]any{"$ref": "#/components/schemas/" + c.schema}, v, c.schema)
			got := resp.StatusCode() != fasthttp.StatusUnprocessableEntity
			if got != (len(errs) == 0) {
				t.Errorf("%s %s %.80s: server answered %d, schema says %v", c.method, c.path, body, resp.StatusCode(), errs)
			}
			if got {
				accepted++
			} else {
				refused++
			}
		}
	}
	if accepted < 15 || refused < 25 {
		t.Errorf("accepted %d and refused %d bodies; the cases look wrong", accepted, refused)
	}

	// A product created without stock gets the documented default.
	srv, st := newDocServer(t, nil)
	serve(srv.Handler(), docRequest{method: "POST", path: "/api/v1/products", contentType: "application/json", body: `{"name":"a","price":1}`})
	if got, want := st.lastStock(), intOf(num("ProductCreate", "stock", "default")); got != want {
		t.Errorf("default stock %d, documented %d", got, want)
	}

	// Query, path and header parameters.
	params := func(method, template string) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, pv := range documentedOperation(t, doc, method, template)["parameters"].([]any) {
			p := deref(t, doc, pv)
			out[p["name"].(string)] = p
		}
		return out
	}
	list := params("GET", "/api/v1/orders")
	limitMax := list["limit"]["schema"].(map[string]any)["maximum"].(json.Number)
	idMax := strings.Repeat("x", int(intOf(params("POST", "/api/v1/orders")["Idempotency-Key"]["schema"].(map[string]any)["maxLength"].(json.Number))))
	type pcase struct {
		path, param, value string
		header             bool
	}
	pcases := []pcase{
		{"/api/v1/orders?limit=", "limit", "1", false},
		{"/api/v1/orders?limit=", "limit", "0", false},
		{"/api/v1/orders?limit=", "limit", string(limitMax), false},
		{"/api/v1/orders?limit=", "limit", plus(limitMax, "1"), false},
		{"/api/v1/orders?limit=", "limit", "ten", false},
		{"/api/v1/orders?limit=", "limit", "1.5", false},
		{"/api/v1/orders?status=", "status", "shipped", false},
		{"/api/v1/orders?status=", "status", "Shipped", false},
		{"/api/v1/orders?product_id=", "product_id", "1", false},
		{"/api/v1/orders?product_id=", "product_id", "0", false},
		{"/api/v1/orders?product_id=", "product_id", "-3", false},
		{"/api/v1/orders?cursor=", "cursor", "!!", false},
		{"/api/v1/orders/", "id", "1", false},
		{"/api/v1/orders/", "id", "0", false},
		{"/api/v1/orders/", "id", "x1", false},
		{"/api/v1/orders", "Idempotency-Key", idMax, true},
		{"/api/v1/orders", "Idempotency-Key", idMax + "x", true},
	}
	for _, c := range pcases {
		srv, st := newDocServer(t, nil)
		st.seed()
		req := docRequest{method: "GET", path: c.path + url.QueryEscape(c.value)}
		p := list[c.param]
		switch {
		case c.header:
			req = docRequest{method: "POST", path: c.path, contentType: "application/json", body: `{"product_id":1,"quantity":1}`,
				header: map[string]string{c.param: c.value}}
			p = params("POST", "/api/v1/orders")[c.param]
		case c.param == "id":
			p = params("GET", "/api/v1/orders/{id}")[c.param]
		}
		resp := serve(srv.Handler(), req)
		errs := validateParam(doc, p["schema"], c.value)
		refused := resp.StatusCode() == fasthttp.StatusUnprocessableEntity || (c.header && resp.StatusCode() == fasthttp.StatusBadRequest)
		if got := !refused; got != (len(errs) == 0) {
			t.Errorf("%s=%.40q: server answered %d, schema says %v", c.param, c.value, resp.StatusCode(), errs)
		}
	}

	// A request body is accepted in exactly the content types the
	// document lists (parameters such as charset do not matter).
	for r, op := range documentedOperations(doc) {
		if op["requestBody"] == nil || !strings.HasPrefix(r.Path, "/api/v1") {
			continue
		}
		path := strings.ReplaceAll(r.Path, "{id}", "1")
		content := deref(t, doc, op["requestBody"])["content"].(map[string]any)
		for _, ct := range []string{"application/json", "application/merge-patch+json", "application/problem+json",
			"text/plain", "application/x-www-form-urlencoded", ""} {
			srv, st := newDocServer(t, nil)
			st.seed()
			sent := ct
			if ct != "" {
				sent += "; charset=utf-8"
			}
			code := serve(srv.Handler(), docRequest{method: r.Method, path: path, contentType: sent, body: `{}`}).StatusCode()
			if _, documented := content[ct]; documented != (code != fasthttp.StatusUnsupportedMediaType) {
				t.Errorf("%s %s with Content-Type %q: %d, documented types %v", r.Method, r.Path, ct, code, sortedKeys(content))
			}
		}
	}
}

// stubLimiter allows or refuses every request, with fixed header values.
type stubLimiter struct {
	mu      sync.Mutex
	refuse  bool
	failure error
}

func (l *stubLimiter) set(allow bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refuse, l.failure = !allow, err
}

func (l *stubLimiter) Allow(_ context.Context, _ server.RouteClass, _ string, dst []byte) (server.RateDecision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failure != nil {
		return server.RateDecision{}, l.failure
	}
	d := server.RateDecision{Allowed: !l.refuse, Policy: []byte(`"default";q=100;w=1`)}
	d.State = append(dst, `"default";r=99;t=1`...)
	if l.refuse {
		d.RetryAfter = 1500 * time.Millisecond
		d.State = append(dst[:0], `"default";r=0;t=2`...)
	}
	return d, nil
}

type pingerFunc func(context.Context) error

func (f pingerFunc) Ping(ctx context.Context) error { return f(ctx) }
