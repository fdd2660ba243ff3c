package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi/datamodel/high/base"
	"github.com/pb33f/libopenapi/orderedmap"
	"github.com/valyala/fasthttp"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/server"
)

// The tests in this file keep openapi.json true: it must be valid OpenAPI
// 3.1, list the routes the router registers, state the domain's limits and
// accept exactly the requests the server accepts. Every response the
// server's tests produce is checked against it by checkResponse; the
// exchanges below produce the ones no other test does.

// docConfig is a server configuration with every optional route
// registered: /metrics answers only when a metrics handler is set.
func docConfig() server.Config {
	return server.Config{
		Metrics: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
			ctx.SetBodyString("# no metrics\n")
		},
	}
}

func TestOpenAPI_Document(t *testing.T) {
	d := document(t)
	if !json.Valid(d.raw) {
		t.Error("openapi.json is not one JSON value")
	}
	if d.model.Version != "3.1.0" {
		t.Errorf("openapi is %s, want 3.1.0", d.model.Version)
	}
	if d.model.Info == nil || d.model.Info.Title == "" || d.model.Info.Version == "" {
		t.Error("info needs title and version")
	}
	if len(d.model.Servers) != 1 || d.model.Servers[0].URL != "/" {
		t.Errorf("servers are %v, want the one server /", d.model.Servers)
	}
	// Against the OpenAPI 3.1 schema itself.
	d.mu.Lock()
	_, errs := d.validator.ValidateDocument()
	d.mu.Unlock()
	for _, e := range describe(errs) {
		t.Error(e)
	}
	// Every component is used, so none can drift out of date unnoticed.
	// (An unresolvable reference fails the model's build in document.)
	c := d.model.Components
	for kind, names := range map[string]iter.Seq[string]{
		"schemas": c.Schemas.KeysFromOldest(), "responses": c.Responses.KeysFromOldest(),
		"parameters": c.Parameters.KeysFromOldest(), "requestBodies": c.RequestBodies.KeysFromOldest(),
		"headers": c.Headers.KeysFromOldest(),
	} {
		for name := range names {
			if !strings.Contains(string(d.raw), `"#/components/`+kind+`/`+name+`"`) {
				t.Errorf("components/%s/%s is never referenced", kind, name)
			}
		}
	}
}

func TestOpenAPI_RoutesDocumented(t *testing.T) {
	ops := document(t).operations()
	seen := map[server.Route]bool{}
	for _, r := range newServer(t, docConfig()).Routes() {
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
	if slices.Contains(newServer(t, server.Config{}).Routes(), server.Route{Method: "GET", Path: "/metrics"}) {
		t.Error("/metrics is registered without a metrics handler")
	}
	if len(seen) < 20 {
		t.Errorf("only %d routes registered; the route list looks wrong", len(seen))
	}
}

func TestOpenAPI_Operations(t *testing.T) {
	ids := map[string]string{}
	tmpl := regexp.MustCompile(`\{([^}]+)\}`)
	for r, op := range document(t).operations() {
		name := r.Method + " " + r.Path
		if op.OperationId == "" {
			t.Errorf("%s has no operationId", name)
		} else if prev, dup := ids[op.OperationId]; dup {
			t.Errorf("operationId %s is used by %s and %s", op.OperationId, prev, name)
		}
		ids[op.OperationId] = name

		// Path parameters and the template name the same variables.
		want := map[string]bool{}
		for _, m := range tmpl.FindAllStringSubmatch(r.Path, -1) {
			want[m[1]] = true
		}
		for _, p := range op.Parameters {
			if p.In != "path" {
				continue
			}
			if !want[p.Name] || p.Required == nil || !*p.Required {
				t.Errorf("%s: path parameter %s is not a required variable of the template", name, p.Name)
			}
			delete(want, p.Name)
		}
		for v := range want {
			t.Errorf("%s: path variable %s is not documented", name, v)
		}

		// The statuses every API route can answer.
		need := []string{"405"}
		api := strings.HasPrefix(r.Path, "/api/v1/") || strings.HasPrefix(r.Path, "/products") || strings.HasPrefix(r.Path, "/orders")
		if api {
			need = append(need, "429", "500", "503")
		}
		if r.Method != "GET" {
			need = append(need, "401")
			if len(op.Security) != 2 || !slices.Equal(slices.Collect(op.Security[0].Requirements.KeysFromOldest()), []string{"bearerAuth"}) ||
				orderedmap.Len(op.Security[1].Requirements) != 0 {
				t.Errorf("%s: security must be an optional bearerAuth", name)
			}
		} else if op.Security == nil || len(op.Security) != 0 {
			t.Errorf("%s: reads need no credentials, security is %v", name, op.Security)
		}
		if op.RequestBody != nil {
			need = append(need, "400", "413", "415", "422")
		}
		if strings.Contains(r.Path, "{id}") {
			need = append(need, "404", "422")
		}
		for _, s := range need {
			if op.Responses.Codes.GetOrZero(s) == nil {
				t.Errorf("%s does not document %s", name, s)
			}
		}
		// Errors are problem details, except /readyz's 503, which reports
		// each check.
		for status, res := range op.Responses.Codes.FromOldest() {
			if status < "400" || name == "GET /readyz" {
				continue
			}
			if orderedmap.Len(res.Content) != 1 || res.Content.GetOrZero("application/problem+json") == nil {
				t.Errorf("%s %s: an error must be application/problem+json only", name, status)
			}
		}
	}
}

// The root aliases run the same handlers, so their operations must equal
// the canonical ones except for their names.
func TestOpenAPI_RootAliases(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(document(t).raw, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/api/v1/") {
			continue
		}
		for method, op := range item {
			alias, ok := doc.Paths[strings.TrimPrefix(path, "/api/v1")][method]
			if !ok {
				t.Errorf("%s %s has no documented root alias", method, path)
				continue
			}
			n++
			if got, want := alias["operationId"], op["operationId"].(string)+"RootAlias"; got != want {
				t.Errorf("root alias of %s %s is named %v, want %s", method, path, got, want)
			}
			a, c := maps(alias), maps(op)
			for _, k := range []string{"operationId", "tags", "description"} {
				delete(a, k)
				delete(c, k)
			}
			if !reflect.DeepEqual(a, c) {
				t.Errorf("root alias of %s %s differs from it", method, path)
			}
		}
	}
	if n != 11 {
		t.Errorf("%d aliased operations, want 11", n)
	}
}

func maps(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(v any) []string {
	var out []string
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func TestOpenAPI_SchemasMatchDomain(t *testing.T) {
	d := document(t)
	for schema, v := range map[string]any{
		"Product": apiperf.Product{}, "Order": apiperf.Order{}, "Problem": server.Problem{},
		"FieldError": apiperf.FieldError{},
	} {
		got := slices.Sorted(d.schema(t, schema).Properties.KeysFromOldest())
		if want := jsonFields(v); !slices.Equal(got, want) {
			t.Errorf("%s properties are %v, the Go type has %v", schema, got, want)
		}
	}
	num := func(f *float64) string {
		if f == nil {
			return "none"
		}
		return strconv.FormatFloat(*f, 'f', -1, 64)
	}
	prop := func(schema, name string) *base.Schema { return d.property(t, schema, name) }
	maxLen := func(s *base.Schema) string {
		if s.MaxLength == nil {
			return "none"
		}
		return strconv.FormatInt(*s.MaxLength, 10)
	}
	checks := []struct{ what, got, want string }{
		{"ProductCreate.name maxLength", maxLen(prop("ProductCreate", "name")), strconv.Itoa(apiperf.MaxNameLen)},
		{"ProductPatch.name maxLength", maxLen(prop("ProductPatch", "name")), strconv.Itoa(apiperf.MaxNameLen)},
		{"Product.name maxLength", maxLen(prop("Product", "name")), strconv.Itoa(apiperf.MaxNameLen)},
		{"ProductCreate.description maxLength", maxLen(prop("ProductCreate", "description")), strconv.Itoa(apiperf.MaxDescriptionLen)},
		{"ProductPatch.description maxLength", maxLen(prop("ProductPatch", "description")), strconv.Itoa(apiperf.MaxDescriptionLen)},
		{"ProductCreate.stock maximum", num(prop("ProductCreate", "stock").Maximum), strconv.Itoa(apiperf.MaxStock)},
		{"ProductPatch.stock maximum", num(prop("ProductPatch", "stock").Maximum), strconv.Itoa(apiperf.MaxStock)},
		{"Product.stock maximum", num(prop("Product", "stock").Maximum), strconv.Itoa(apiperf.MaxStock)},
		{"ProductCreate.stock default", prop("ProductCreate", "stock").Default.Value, strconv.Itoa(apiperf.DefaultStock)},
		{"ProductCreate.price maximum", num(prop("ProductCreate", "price").Maximum), apiperf.MaxPrice.String()},
		{"Order.total maximum", num(prop("Order", "total").Maximum), apiperf.MaxTotal.String()},
		{"OrderCreate.quantity maximum", num(prop("OrderCreate", "quantity").Maximum), strconv.Itoa(apiperf.MaxQuantity)},
		{"Order.quantity maximum", num(prop("Order", "quantity").Maximum), strconv.Itoa(apiperf.MaxQuantity)},
		{"OrderCreate.product_id minimum", num(prop("OrderCreate", "product_id").Minimum), "1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s is %s, the domain says %s", c.what, c.got, c.want)
		}
	}
	var got []string
	for _, e := range d.schema(t, "OrderStatus").Enum {
		if !apiperf.OrderStatus(e.Value).Valid() {
			t.Errorf("status %s is not valid in the domain", e.Value)
		}
		got = append(got, e.Value)
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
	d := document(t)
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Examples []json.RawMessage `json:"examples"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(d.raw, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, s := range doc.Components.Schemas {
		for _, ex := range s.Examples {
			n++
			if p := d.schemaProblems(d.schema(t, name), ex); len(p) > 0 {
				t.Errorf("an example of %s: %q", name, p)
			}
		}
	}
	if n == 0 {
		t.Error("no examples found")
	}
}

// TestOpenAPI_CheckRejects feeds the response check answers with one
// fault each, so that a check which lets everything through cannot go
// unnoticed.
func TestOpenAPI_CheckRejects(t *testing.T) {
	d := document(t)
	product := `{"id":1,"name":"cup","description":null,"price":12.5,"stock":3,"version":1,` +
		`"created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z"}`
	problem := `{"type":"about:blank","title":"Not Found","status":404,"request_id":"r0"}`
	js := []string{"Content-Type", "application/json", "ETag", `"a"`}
	pj := []string{"Content-Type", "application/problem+json"}
	cases := []struct {
		name, method, path string
		status             int
		header             []string
		body               string
		// want is in the one problem found; empty when none may be.
		want string
	}{
		{"Conforms", "GET", "/api/v1/products/1", 200, js, product, ""},
		{"ConformsUnrouted", "GET", "/nowhere", 404, pj, problem, ""},
		{"MissingProperty", "GET", "/api/v1/products/1", 200, js, strings.Replace(product, `"stock":3,`, ``, 1), "stock"},
		{"ThreeDecimals", "GET", "/api/v1/products/1", 200, js, strings.Replace(product, `12.5`, `12.505`, 1), "multipleOf"},
		{"NotADateTime", "GET", "/products/1", 200, js, strings.Replace(product, `2025-01-02T03:04:05Z"}`, `yesterday"}`, 1), "date-time"},
		{"MissingHeader", "GET", "/api/v1/products/1", 200, js[:2], product, "ETag"},
		{"UndocumentedStatus", "GET", "/api/v1/products/1", 418, pj, strings.Replace(problem, "404", "418", 1), "418"},
		{"UndocumentedContentType", "GET", "/api/v1/products/1", 404, []string{"Content-Type", "text/plain"}, "gone", "text/plain"},
		{"RequestIDMismatch", "GET", "/api/v1/orders/1", 404, pj, strings.Replace(problem, "r0", "r1", 1), "request_id"},
		{"BodyWhereNone", "DELETE", "/api/v1/orders/1", 204, nil, "{}", "body"},
		{"WrongAllow", "PUT", "/api/v1/orders/1", 405, append(pj, "Allow", "GET"), strings.Replace(problem, "404", "405", 1), "Allow"},
		{"UnroutedNotProblem", "GET", "/nowhere", 404, []string{"Content-Type", "text/plain"}, "404", "text/plain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, "http://api.test"+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := &http.Response{StatusCode: c.status, Header: http.Header{"X-Request-Id": {"r0"}}}
			for i := 0; i+1 < len(c.header); i += 2 {
				res.Header.Set(c.header[i], c.header[i+1])
			}
			got := d.responseProblems(req, res, []byte(c.body))
			switch {
			case c.want == "" && len(got) > 0:
				t.Errorf("found problems in a documented answer: %q", got)
			case c.want != "" && (len(got) != 1 || !strings.Contains(got[0], c.want)):
				t.Errorf("found %q, want one problem about %s", got, c.want)
			}
		})
	}
}

// TestOpenAPI_ResponsesMatchDocument runs the life of a product and its
// orders through both prefixes, on both databases, so that every status
// the document promises is produced at least once and checked against it.
func TestOpenAPI_ResponsesMatchDocument(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		for _, prefix := range []string{"/api/v1", ""} {
			t.Run("prefix="+prefix, func(t *testing.T) {
				st := &faultyStore{DB: openStore(t, backend, "")}
				cfg := docConfig()
				cfg.Products, cfg.Orders = st, st
				ts := startServer(t, st.DB, cfg)
				do := func(want int, method, path, body string, header ...string) *response {
					t.Helper()
					return ts.do(t, method, prefix+path, body, header...).want(t, want)
				}

				r := do(201, "POST", "/products", `{"name":"cup","description":"white","price":12.5}`)
				if got, want := r.Header.Get("Location"), prefix+"/products/1"; got != want {
					t.Errorf("Location %q, want %q", got, want)
				}
				do(201, "POST", "/products", `{"name":"saucer","description":null,"price":3,"stock":0}`)
				etag := do(200, "GET", "/products/1", "").Header.Get("ETag")
				do(304, "GET", "/products/1", "", "If-None-Match", etag)
				do(404, "GET", "/products/99", "")
				do(422, "GET", "/products/0", "")
				do(412, "PUT", "/products/1", `{"name":"cup","price":13,"stock":100}`, "If-Match", `"nope"`)
				do(428, "PUT", "/products/1", `{"name":"cup","price":13,"stock":90}`)
				do(200, "PUT", "/products/1", `{"name":"cup","price":13,"stock":100}`, "If-Match", etag)
				do(404, "PUT", "/products/99", `{"name":"cup","price":13,"stock":100}`)
				do(428, "PATCH", "/products/1", `{"description":null,"stock":10}`, "Content-Type", "application/merge-patch+json")
				do(200, "PATCH", "/products/1", `{"description":null,"stock":100}`, "Content-Type", "application/merge-patch+json")
				do(415, "PATCH", "/products/1", `{}`, "Content-Type", "text/plain")
				do(400, "POST", "/products", `{"name":`)
				r = do(422, "POST", "/products", `{"name":"","price":1.001,"stock":-1}`)
				if n := strings.Count(string(r.Body), `"field"`); n != 3 {
					t.Errorf("422 lists %d fields, want 3: %s", n, r.Body)
				}
				var page struct {
					NextCursor string `json:"next_cursor"`
				}
				if err := json.Unmarshal(do(200, "GET", "/products?limit=1", "").Body, &page); err != nil || page.NextCursor == "" {
					t.Fatalf("first page has no next_cursor (%v)", err)
				}
				do(200, "GET", "/products?limit=1&cursor="+page.NextCursor, "")
				do(422, "GET", "/products?limit=101", "")

				r = do(201, "POST", "/orders", `{"product_id":1,"quantity":2}`, "Idempotency-Key", "k1")
				first, keyed := string(r.Body), fmt.Sprint(r.orderID(t))
				r = do(201, "POST", "/orders", `{"product_id":1, "quantity":2}`, "Idempotency-Key", "k1")
				if r.Header.Get("Idempotent-Replayed") != "true" || string(r.Body) != first {
					t.Errorf("retry was not a replay: %s", r.Body)
				}
				do(422, "POST", "/orders", `{"product_id":1,"quantity":3}`, "Idempotency-Key", "k1")
				do(400, "POST", "/orders", `{"product_id":1,"quantity":3}`, "Idempotency-Key", "no spaces please")
				do(409, "POST", "/orders", `{"product_id":2,"quantity":1}`)
				do(404, "POST", "/orders", `{"product_id":99,"quantity":1}`)
				do(404, "POST", "/orders", `{"product_id":99,"quantity":1}`, "Idempotency-Key", "k404")
				if r := do(404, "POST", "/orders", `{"product_id":99,"quantity":1}`, "Idempotency-Key", "k404"); r.Header.Get("Idempotent-Replayed") != "true" {
					t.Error("a failed order's retry was not a replay")
				}
				// MariaDB spends auto-increment values on refused orders, so
				// the ids come from the answers.
				plain := fmt.Sprint(do(201, "POST", "/orders", `{"product_id":1,"quantity":1}`).orderID(t))
				do(200, "GET", "/orders/"+keyed, "")
				do(404, "GET", "/orders/99", "")
				do(200, "GET", "/orders?status=pending&product_id=1&limit=1", "")
				do(422, "GET", "/orders?status=lost", "")
				do(200, "PATCH", "/orders/"+keyed, `{"status":"paid"}`)
				do(409, "PATCH", "/orders/"+keyed, `{"status":"pending"}`)
				do(409, "DELETE", "/products/1", "")
				do(204, "DELETE", "/orders/"+keyed, "")
				do(204, "DELETE", "/orders/"+plain, "")
				do(404, "DELETE", "/orders/"+plain, "")
				do(204, "DELETE", "/products/1", "")
				do(404, "DELETE", "/products/1", "")
				do(405, "PUT", "/orders/1", `{}`)
				do(200, "OPTIONS", "/orders/1", "")

				st.failReads(errors.New("disk on fire"))
				if r := do(500, "GET", "/products/2", ""); strings.Contains(string(r.Body), "fire") {
					t.Errorf("a 500 leaks its cause: %s", r.Body)
				}
				st.failReads(apiperf.Errorf(apiperf.EUNAVAILABLE, "the database is unavailable"))
				do(503, "GET", "/orders", "")
			})
		}
	})
}

func TestOpenAPI_ResponsesMatchDocument_AuthAndLimits(t *testing.T) {
	db := openStore(t, "sqlite", "")
	lim := &stubLimiter{}
	cfg := docConfig()
	cfg.APIKeys = []string{"secret"}
	cfg.Limiter = lim
	cfg.ReadLimit = apiperf.RatePolicy{Name: "read", Rate: 100, Period: time.Second, Burst: 100}
	cfg.WriteLimit = apiperf.RatePolicy{Name: "write", Rate: 10, Period: time.Second, Burst: 20}
	ts := startServer(t, db, cfg)
	ts.do(t, "POST", "/api/v1/products", `{"name":"cup","price":1}`).want(t, 401)
	r := ts.do(t, "POST", "/products", `{"name":"cup","price":1}`, "Authorization", "Bearer secret").want(t, 201)
	if r.Header.Get("RateLimit") == "" {
		t.Error("a limited route answered without RateLimit")
	}
	ts.do(t, "GET", "/api/v1/products/1", "").want(t, 200)
	// Answers after the limiter carry its headers, errors included.
	for _, r := range []*response{
		ts.do(t, "GET", "/api/v1/products/9", "").want(t, 404),
		ts.do(t, "GET", "/api/v1/products?limit=0", "").want(t, 422),
		ts.do(t, "POST", "/api/v1/orders", `{"product_id":`, "Authorization", "Bearer secret").want(t, 400),
	} {
		if r.Header.Get("RateLimit") == "" {
			t.Errorf("a %d after the limiter has no RateLimit", r.Status)
		}
	}
	lim.set(false, nil)
	ts.do(t, "GET", "/api/v1/products/1", "").want(t, 429)
	lim.set(true, apiperf.Errorf(apiperf.EUNAVAILABLE, "the rate limiter is unavailable"))
	ts.do(t, "DELETE", "/products/1", "", "Authorization", "Bearer secret").want(t, 503)
	lim.set(true, nil)
	// Headers over the limit are refused before routing, on any operation.
	big := strings.Repeat("a", 64<<10)
	ts.do(t, "GET", "/api/v1/products/1", "", "X-Big", big).want(t, 431)
	ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`, "X-Big", big).want(t, 431)
	ts.do(t, "GET", "/healthz", "").want(t, 200)
	ts.do(t, "GET", "/readyz", "").want(t, 200)
	ts.do(t, "GET", "/metrics", "").want(t, 200)
	ts.do(t, "POST", "/healthz", "").want(t, 405)

	down := docConfig()
	down.Ready = []server.Check{{Name: "database", Pinger: pingerFunc(func(context.Context) error { return errors.New("down") })}}
	if r := startServer(t, db, down).do(t, "GET", "/readyz", ""); r.Status != 503 {
		t.Errorf("/readyz with a failing check: %d", r.Status)
	}

	// An optional check (read replicas) that fails leaves the service
	// ready, degraded; a required one still makes it unavailable.
	lagging := server.Check{Name: "replicas", Optional: true, Pinger: pingerFunc(func(context.Context) error { return errors.New("lagging") })}
	for _, c := range []struct {
		required    apiperf.Pinger
		status      int
		overall, db string
	}{
		{db, 200, "degraded", "ok"},
		{pingerFunc(func(context.Context) error { return errors.New("down") }), 503, "unavailable", "unavailable"},
	} {
		cfg := docConfig()
		cfg.Ready = []server.Check{{Name: "database", Pinger: c.required}, lagging}
		r := startServer(t, db, cfg).do(t, "GET", "/readyz", "")
		body := r.JSON(t)
		checks, _ := body["checks"].(map[string]any)
		if r.Status != c.status || body["status"] != c.overall || checks["database"] != c.db || checks["replicas"] != "degraded" {
			t.Errorf("/readyz with replicas lagging and the database %s: %d %v, want %d", c.db, r.Status, body, c.status)
		}
	}
}

// TestOpenAPI_ValidationMatchesSchema sends values at and beyond each limit
// the document states and checks that the server refuses (422) exactly the
// requests the document refuses.
func TestOpenAPI_ValidationMatchesSchema(t *testing.T) {
	d := document(t)
	// plus is a documented limit plus delta, as a JSON number.
	plus := func(limit *float64, delta string) string {
		r := rat(strconv.FormatFloat(*limit, 'f', -1, 64))
		s := r.Add(r, rat(delta)).FloatString(2)
		return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
	}
	at := func(limit *float64) string { return plus(limit, "0") }
	quote := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	nameMax := int(*d.property(t, "ProductCreate", "name").MaxLength)
	descMax := int(*d.property(t, "ProductCreate", "description").MaxLength)
	priceMax, stockMax := d.property(t, "ProductCreate", "price").Maximum, d.property(t, "ProductCreate", "stock").Maximum
	qtyMax, pidMax := d.property(t, "OrderCreate", "quantity").Maximum, d.property(t, "OrderCreate", "product_id").Maximum

	products := []string{
		`{"name":` + quote(strings.Repeat("é", nameMax)) + `,"price":1}`,
		`{"name":` + quote(strings.Repeat("é", nameMax+1)) + `,"price":1}`,
		`{"name":"","price":1}`,
		`{"name":"  ","price":1}`,
		`{"price":1}`,
		`{"name":null,"price":1}`,
		`{"name":"a"}`,
		`{"name":"a","price":` + at(priceMax) + `}`,
		`{"name":"a","price":` + plus(priceMax, "0.01") + `}`,
		`{"name":"a","price":0}`,
		`{"name":"a","price":-0.01}`,
		`{"name":"a","price":0.001}`,
		`{"name":"a","price":"1"}`,
		`{"name":"a","price":1,"description":` + quote(strings.Repeat("ß", descMax)) + `}`,
		`{"name":"a","price":1,"description":` + quote(strings.Repeat("ß", descMax+1)) + `}`,
		`{"name":"a","price":1,"description":null}`,
		`{"name":"a","price":1,"description":5}`,
		`{"name":"a","price":1,"stock":` + at(stockMax) + `}`,
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
		`{"stock":` + at(stockMax) + `}`,
		`{"version":3}`,
	}
	orders := []string{
		`{"product_id":1,"quantity":1}`,
		`{"product_id":1,"quantity":0}`,
		`{"product_id":1,"quantity":` + at(qtyMax) + `}`,
		`{"product_id":1,"quantity":` + plus(qtyMax, "1") + `}`,
		`{"product_id":0,"quantity":1}`,
		// The validator reads JSON numbers as float64, which has no
		// 2^53+1; 2^53+2 is the first id above the maximum it can see.
		`{"product_id":` + plus(pidMax, "2") + `,"quantity":1}`,
		`{"product_id":1}`,
		`{"quantity":1}`,
		`{"product_id":1,"quantity":1,"note":"x"}`,
	}
	var statuses []string
	for _, e := range d.schema(t, "OrderStatus").Enum {
		statuses = append(statuses, `{"status":"`+e.Value+`"}`)
	}
	statuses = append(statuses, `{"status":"lost"}`, `{"status":null}`, `{}`, `{"status":"paid","x":1}`)

	// One server for every case: only whether the server got past
	// validation counts (anything but a 422: the store may still refuse,
	// with a 404 or a 409), and no state the cases leave turns that into
	// a 422.
	ts := startServer(t, openStore(t, "sqlite", ""), server.Config{})
	ts.do(t, "POST", "/products", `{"name":"seed","price":1,"stock":`+at(stockMax)+`}`).want(t, 201)
	ts.do(t, "POST", "/orders", `{"product_id":1,"quantity":1}`).want(t, 201)

	// agree sends one request and fails t unless the server and the
	// document agree on whether it is valid. The server refuses a bad
	// body, query or path value with a 422, a bad header with a 400.
	accepted, refused := 0, 0
	agree := func(method, path, ct, body string, header ...string) {
		t.Helper()
		badHeader := len(header) > 0
		req, err := http.NewRequest(method, "http://api.test"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		header = append([]string{"Content-Type", ct}, header...)
		for i := 0; i+1 < len(header); i += 2 {
			if header[i+1] != "" {
				req.Header.Set(header[i], header[i+1])
			}
		}
		problems := d.requestProblems(req)
		status := ts.do(t, method, path, body, header...).Status
		serverRefused := status == http.StatusUnprocessableEntity || badHeader && status == http.StatusBadRequest
		if !serverRefused != (len(problems) == 0) {
			t.Errorf("%s %s %.80s: server answered %d, the document says %q", method, path, body, status, problems)
		}
		if len(problems) == 0 {
			accepted++
		} else {
			refused++
		}
	}
	for _, c := range []struct {
		method, path, ct string
		bodies           []string
	}{
		{"POST", "/api/v1/products", "application/json", products},
		{"PUT", "/api/v1/products/1", "application/json", products},
		{"PATCH", "/api/v1/products/1", "application/merge-patch+json", patches},
		{"POST", "/api/v1/orders", "application/json", orders},
		{"PATCH", "/api/v1/orders/1", "application/json", statuses},
	} {
		for _, body := range c.bodies {
			agree(c.method, c.path, c.ct, body)
		}
	}

	// Query, path and header parameters.
	limitMax := d.model.Components.Parameters.GetOrZero("Limit").Schema.Schema().Maximum
	keyMax := int(*d.model.Components.Parameters.GetOrZero("Idempotency-Key").Schema.Schema().MaxLength)
	for _, q := range []string{
		"limit=1", "limit=0", "limit=" + at(limitMax), "limit=" + plus(limitMax, "1"), "limit=ten", "limit=1.5",
		"status=shipped", "status=Shipped", "product_id=1", "product_id=0", "product_id=-3", "cursor=!!",
	} {
		k, v, _ := strings.Cut(q, "=")
		agree("GET", "/api/v1/orders?"+k+"="+url.QueryEscape(v), "", "")
	}
	for _, id := range []string{"1", "0", "x1"} {
		agree("GET", "/api/v1/orders/"+id, "", "")
	}
	for _, key := range []string{strings.Repeat("k", keyMax), strings.Repeat("k", keyMax+1)} {
		agree("POST", "/api/v1/orders", "application/json", `{"product_id":1,"quantity":1}`, "Idempotency-Key", key)
	}
	if accepted < 25 || refused < 35 {
		t.Errorf("accepted %d and refused %d requests; the cases look wrong", accepted, refused)
	}

	// A product created without stock gets the documented default.
	p := ts.do(t, "POST", "/api/v1/products", `{"name":"a","price":1}`).want(t, 201).JSON(t)
	if got, want := fmt.Sprint(p["stock"]), d.property(t, "ProductCreate", "stock").Default.Value; got != want {
		t.Errorf("default stock %s, documented %s", got, want)
	}

	// A request body is accepted in exactly the content types the
	// document lists (parameters such as charset do not matter).
	for r, op := range d.operations() {
		if op.RequestBody == nil || !strings.HasPrefix(r.Path, "/api/v1") {
			continue
		}
		path := strings.ReplaceAll(r.Path, "{id}", "1")
		for _, ct := range []string{"application/json", "application/merge-patch+json", "application/problem+json",
			"text/plain", "application/x-www-form-urlencoded", ""} {
			sent := ct
			if ct != "" {
				sent += "; charset=utf-8"
			}
			status := ts.do(t, r.Method, path, `{}`, "Content-Type", sent).Status
			if documented := op.RequestBody.Content.GetOrZero(ct) != nil; documented != (status != http.StatusUnsupportedMediaType) {
				t.Errorf("%s %s with Content-Type %q: %d, documented types %v", r.Method, r.Path, ct, status,
					slices.Collect(op.RequestBody.Content.KeysFromOldest()))
			}
		}
	}
}

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic("bad number " + s)
	}
	return r
}

// stubLimiter allows or refuses every request, or fails, with fixed
// numbers; the limiter package tests the real GCRA.
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

func (l *stubLimiter) Allow(_ context.Context, _ string, p apiperf.RatePolicy, _ int) (apiperf.RateDecision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failure != nil {
		return apiperf.RateDecision{}, l.failure
	}
	if l.refuse {
		return apiperf.RateDecision{Limit: p.Burst, RetryAfter: 1500 * time.Millisecond, ResetAfter: 2 * time.Second}, nil
	}
	return apiperf.RateDecision{Allowed: true, Limit: p.Burst, Remaining: p.Burst - 1, ResetAfter: time.Second}, nil
}

type pingerFunc func(context.Context) error

func (f pingerFunc) Ping(ctx context.Context) error { return f(ctx) }
