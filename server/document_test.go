package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/router"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"
	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/server"
)

// openAPI is server/openapi.json as the tests read it: the raw bytes, the
// model with every reference resolved, and a validator for the exchanges
// it describes.
type openAPI struct {
	raw     []byte
	model   *v3.Document
	router  router.Router
	problem *base.Schema
	// mu serializes every use of validator and schemas. They compile a
	// schema the first time they meet it, and compiling renders into the
	// shared model, which two goroutines must not do at once (the race
	// detector caught parallel tests at it).
	mu        sync.Mutex
	validator validator.Validator
	schemas   schema_validation.SchemaValidator
}

// loadOpenAPI builds the document's model and validators once per test
// binary, because compiling every schema is the expensive part; parallel
// tests share them (see openAPI.mu).
var loadOpenAPI = sync.OnceValues(func() (*openAPI, error) {
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		return nil, err
	}
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	// Formats are assertions, so a date-time that is not one fails instead
	// of passing as a plain string. Strict mode fails a header the
	// response does not declare (beyond HTTP's own, Server among them);
	// bodies are left to the schemas, whose open maps (Readiness.checks,
	// the document itself) strict mode would refuse.
	opts := []config.Option{
		config.WithFormatAssertions(),
		config.WithStrictMode(),
		config.WithStrictIgnoredHeadersExtra("server"),
		config.WithStrictIgnorePaths("$.body.**"),
	}
	v, errs := validator.NewValidator(doc, opts...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("openapi.json: %w", errors.Join(errs...))
	}
	return &openAPI{
		raw:       raw,
		model:     &m.Model,
		router:    router.NewRouter(&m.Model, router.WithPathOnlyMatching()),
		problem:   m.Model.Components.Schemas.GetOrZero("Problem").Schema(),
		validator: v,
		schemas:   schema_validation.NewSchemaValidator(opts...),
	}, nil
})

func document(tb testing.TB) *openAPI {
	tb.Helper()
	d, err := loadOpenAPI()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// operations lists every documented method and path, as router routes.
func (d *openAPI) operations() map[server.Route]*v3.Operation {
	ops := map[server.Route]*v3.Operation{}
	for path, item := range d.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			ops[server.Route{Method: strings.ToUpper(method), Path: path}] = op
		}
	}
	return ops
}

// schema returns a component schema by name.
func (d *openAPI) schema(tb testing.TB, name string) *base.Schema {
	tb.Helper()
	p := d.model.Components.Schemas.GetOrZero(name)
	if p == nil {
		tb.Fatalf("no schema %s", name)
	}
	return p.Schema()
}

// property returns a component schema's property.
func (d *openAPI) property(tb testing.TB, schema, name string) *base.Schema {
	tb.Helper()
	p := d.schema(tb, schema).Properties.GetOrZero(name)
	if p == nil {
		tb.Fatalf("schema %s has no property %s", schema, name)
	}
	return p.Schema()
}

// checkResponse fails tb unless res, the answer to req, is one the
// document describes. Every response the server's tests see comes through
// here.
func checkResponse(tb testing.TB, req *http.Request, res *http.Response, body []byte) {
	tb.Helper()
	for _, p := range document(tb).responseProblems(req, res, body) {
		tb.Errorf("%s %s answered %d, which the document does not allow: %s; body %.300s",
			req.Method, req.URL.RequestURI(), res.StatusCode, p, body)
	}
}

// checkHandled is checkResponse for an exchange run in process: the
// request and the response in ctx, as a client would have seen them.
func checkHandled(tb testing.TB, ctx *fasthttp.RequestCtx) {
	tb.Helper()
	req, err := http.NewRequest(string(ctx.Method()), "http://api.test"+string(ctx.RequestURI()), nil)
	if err != nil {
		tb.Fatal(err)
	}
	res := &http.Response{StatusCode: ctx.Response.StatusCode(), Header: http.Header{}}
	for k, v := range ctx.Response.Header.All() {
		res.Header.Add(string(k), string(v))
	}
	checkResponse(tb, req, res, ctx.Response.Body())
}

// checkUnrouted is checkResponse for an answer fasthttp gives before any
// route is chosen, such as a 408 for a request that never arrived whole.
func checkUnrouted(tb testing.TB, res *http.Response, body []byte) {
	tb.Helper()
	for _, p := range document(tb).unroutedProblems(res, body) {
		tb.Errorf("an answer outside every route (%d) is not a documented problem: %s; body %.300s", res.StatusCode, p, body)
	}
}

// responseProblems lists every way res departs from the document. The
// validator checks the status, the content type, the headers and the body
// against the operation; the rest are the rules its schemas cannot state.
func (d *openAPI) responseProblems(req *http.Request, res *http.Response, body []byte) []string {
	var out []string
	// A replayed response repeats the first one's body, request_id and
	// all, as the Problem schema says.
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if mt == "application/problem+json" && res.Header.Get("Idempotent-Replayed") != "true" {
		var p struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(body, &p); err == nil && p.RequestID != res.Header.Get("X-Request-ID") {
			out = append(out, fmt.Sprintf("the problem's request_id %q is not X-Request-ID %q", p.RequestID, res.Header.Get("X-Request-ID")))
		}
	}

	route, _ := d.router.FindRoute(req)
	if route == nil {
		// No documented path: the router's 404, or an answer fasthttp
		// gave before any route was chosen (the document's introduction
		// lists them). Either way, a problem.
		return append(out, d.unroutedProblems(res, body)...)
	}
	op := route.Operation
	if op == nil {
		// A method the path lacks. The router answers OPTIONS itself and
		// any other method with the 405 every operation of the path
		// documents; both list the documented methods in Allow.
		ops := route.PathItem.GetOperations()
		allow := []string{http.MethodOptions}
		for m := range ops.KeysFromOldest() {
			allow = append(allow, strings.ToUpper(m))
		}
		slices.Sort(allow)
		if got, want := res.Header.Get("Allow"), strings.Join(allow, ", "); got != want {
			out = append(out, fmt.Sprintf("Allow is %q, the document lists %q", got, want))
		}
		if req.Method == http.MethodOptions {
			if res.StatusCode != http.StatusOK || len(body) != 0 {
				out = append(out, "OPTIONS is documented as a 200 with no body")
			}
			return out
		}
		if res.StatusCode != http.StatusMethodNotAllowed {
			return append(out, fmt.Sprintf("%s is not documented for %s", req.Method, route.Path))
		}
		first := ops.First()
		req = req.Clone(req.Context())
		req.Method = strings.ToUpper(first.Key())
		op = first.Value()
	}

	res.Body = io.NopCloser(bytes.NewReader(body))
	d.mu.Lock()
	_, errs := d.validator.ValidateHttpResponse(req, res)
	d.mu.Unlock()
	out = append(out, describe(errs)...)
	// The validator reads a body only where the document declares one.
	if r := op.Responses.Codes.GetOrZero(fmt.Sprint(res.StatusCode)); r != nil && orderedmap.Len(r.Content) == 0 && len(body) != 0 {
		out = append(out, "documented without a body, but has one")
	}
	return out
}

// unroutedProblems checks an answer no operation describes: a problem
// whose body satisfies the Problem schema.
func (d *openAPI) unroutedProblems(res *http.Response, body []byte) []string {
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "application/problem+json" {
		return []string{fmt.Sprintf("an answer outside every route has Content-Type %q, not a problem", res.Header.Get("Content-Type"))}
	}
	if res.Header.Get("X-Request-ID") == "" {
		return []string{"an answer outside every route has no X-Request-ID"}
	}
	return d.schemaProblems(d.problem, body)
}

// schemaProblems lists how value, a JSON text, departs from schema.
func (d *openAPI) schemaProblems(schema *base.Schema, value []byte) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, errs := d.schemas.ValidateSchemaBytes(schema, value)
	return describe(errs)
}

// requestProblems lists how req departs from the document: its path,
// parameters, content type and body.
func (d *openAPI) requestProblems(req *http.Request) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, errs := d.validator.ValidateHttpRequest(req)
	return describe(errs)
}

// describe flattens the validator's errors into one line each.
func describe(errs []*liberrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		msg := e.Message
		if e.Reason != "" {
			msg += " (" + e.Reason + ")"
		}
		for _, f := range e.SchemaValidationErrors {
			msg += "; " + f.FieldPath + ": " + f.Reason
		}
		out = append(out, msg)
	}
	return out
}
