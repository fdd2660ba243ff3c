package bench

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"
)

// Content types the API distinguishes.
const (
	ContentTypeJSON       = "application/json"
	ContentTypeMergePatch = "application/merge-patch+json"
)

// httpClient serves the harness's own setup requests (readiness, seeding,
// restocking); load is generated elsewhere.
var httpClient = &fasthttp.Client{
	Name:            "api-perf-bench",
	ReadTimeout:     10 * time.Second,
	WriteTimeout:    10 * time.Second,
	MaxConnsPerHost: 64,
}

// Do sends one request to http://addr+path and returns the status and a
// copy of the body.
func Do(method, addr, path, contentType string, body []byte) (int, []byte, error) {
	status, resp, _, err := do(method, addr, path, contentType, body, "")
	return status, resp, err
}

// do is Do with an If-Match header (when not empty) that also returns the
// response's ETag.
func do(method, addr, path, contentType string, body []byte, ifMatch string) (int, []byte, string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + addr + path)
	if body != nil {
		req.Header.SetContentType(contentType)
		req.SetBodyRaw(body)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	if err := httpClient.DoTimeout(req, resp, 10*time.Second); err != nil {
		return 0, nil, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), string(resp.Header.Peek("ETag")), nil
}

// Get is Do for a GET without a body.
func Get(addr, path string) (int, []byte, error) {
	return Do(fasthttp.MethodGet, addr, path, "", nil)
}

// CreateProduct creates a product through the API and returns its id.
func CreateProduct(addr, name string, stock int64) (int64, error) {
	body, _ := json.Marshal(map[string]any{"name": name, "description": "seeded by the benchmark harness",
		"price": json.Number("19.99"), "stock": stock})
	status, resp, err := Do(fasthttp.MethodPost, addr, "/products", ContentTypeJSON, body)
	if err != nil {
		return 0, err
	}
	if status != fasthttp.StatusCreated {
		return 0, fmt.Errorf("POST /products answered %d: %s", status, resp)
	}
	var p struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(resp, &p); err != nil || p.ID == 0 {
		return 0, fmt.Errorf("POST /products: no id in %s", resp)
	}
	return p.ID, nil
}

// SeedProducts creates n products with the given stock, eight at a time,
// and returns their ids in creation order of the returned slice.
func SeedProducts(addr, prefix string, n int, stock int64) ([]int64, error) {
	ids := make([]int64, n)
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			id, err := CreateProduct(addr, prefix+"-"+strconv.Itoa(i), stock)
			ids[i] = id
			return err
		})
	}
	return ids, g.Wait()
}

// SetStock sets products' stock with a JSON merge patch through the API, so
// the server also drops their cached bodies. A stock change needs If-Match,
// so each product is read first; a write that an order beat (412) reads
// again.
func SetStock(addr string, stock int64, ids ...int64) error {
	body := []byte(`{"stock":` + strconv.FormatInt(stock, 10) + `}`)
	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	g.SetLimit(8)
	for _, id := range ids {
		g.Go(func() error {
			path := "/products/" + strconv.FormatInt(id, 10)
			var status int
			var resp []byte
			var err error
			for attempt := 0; attempt < 5; attempt++ {
				var etag string
				if status, resp, etag, err = do(fasthttp.MethodGet, addr, path, "", nil, ""); err != nil || status != fasthttp.StatusOK {
					break
				}
				status, resp, _, err = do(fasthttp.MethodPatch, addr, path, ContentTypeMergePatch, body, etag)
				if err != nil || status != fasthttp.StatusPreconditionFailed {
					break
				}
			}
			if err == nil && status != fasthttp.StatusOK {
				err = fmt.Errorf("setting the stock of product %d: answered %d: %s", id, status, resp)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait() //nolint:errcheck // errors are collected above
	return errors.Join(errs...)
}
