package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/api-perf/api-perf/bench"
)

// scenario pairs an api-perf instance with the ceiling that does the same
// route's unavoidable work, under the same workload.
type scenario struct {
	Name    string
	About   string
	Server  string  // target name of the api-perf instance
	Ceiling string  // target name of the ceiling; empty for information only
	Target  float64 // required server/ceiling ratio; 0 for none
	Load    func(f *fixture) workload
	// Restock resets the order products' stock before every round.
	Restock bool
}

// fixture is what seeding produced: the ids each workload uses.
type fixture struct {
	hotID         int64   // the warm product of the cached read scenarios
	readIDs       []int64 // the rotation of the uncached read scenario
	orderIDs      []int64 // products with a huge stock, for orders
	hotOrderID    int64   // the one product every order-hot order buys
	embeddedHotID int64
	listPaths     []string // the pages the list scenarios rotate through
}

var scenarios = []scenario{
	{Name: "get-cached", Server: "api-perf", Ceiling: "fixedbody", Target: 0.90,
		About: "warm GET /products/{id} of one hot product, rate limiter off, against the same server package whose cache returns a fixed body with no lookup",
		Load:  func(f *fixture) workload { return getWorkload(f.hotID) }},
	{Name: "get-cached-limiter", Server: "api-perf-limiter", Ceiling: "fixedbody", Target: 0.60,
		About: "the same with the Redis GCRA limiter on (a policy of " + "1000000/1s,burst=1000000" + " that never refuses)",
		Load:  func(f *fixture) workload { return getWorkload(f.hotID) }},
	{Name: "get-cached-static", Server: "api-perf", Ceiling: "static", Target: 0.90,
		About: "the warm GET, rate limiter off, against a bare fasthttp handler that writes the same body (no router, metrics, request id, ETag or timeouts)",
		Load:  func(f *fixture) workload { return getWorkload(f.hotID) }},
	{Name: "single", Server: "api-perf-limiter", Ceiling: "static", Target: 0.85,
		About: "the warm GET with the Redis limiter on, one client far from its limit (" + bench.HugeLimit + "), against the bare fasthttp handler",
		Load:  func(f *fixture) workload { return getWorkload(f.hotID) }},
	{Name: "crowd", Server: "api-perf-crowd", Ceiling: "static", Target: 0.80,
		About: "the warm GET with the Redis limiter on and " + strconv.Itoa(crowdClients) + " distinct clients, named by X-Forwarded-For from a trusted proxy (127.0.0.1), " +
			"each under a policy of " + crowdLimit + " that none of them comes near, against the bare fasthttp handler (which ignores the header)",
		Load: func(f *fixture) workload { return crowdWorkload(f.hotID) }},
	{Name: "get-uncached", Server: "api-perf-nocache", Ceiling: "selectbyid", Target: 0.90,
		About: "GET /products/{id} rotating through many ids with the product cache off, against one prepared SELECT per request",
		Load:  func(f *fixture) workload { return getWorkload(f.readIDs...) }},
	{Name: "order-create", Server: "api-perf", Ceiling: "ordertx", Target: 1.5, Restock: true,
		About: "POST /orders rotating through products with a huge stock, against one UPDATE+INSERT transaction per request",
		Load:  func(f *fixture) workload { return orderWorkload(f.orderIDs) }},
	{Name: "order-hot", Server: "api-perf", Ceiling: "ordertx", Target: 3.0, Restock: true,
		About: "POST /orders all for one product with a huge stock (a flash sale), against one UPDATE+INSERT transaction per request",
		Load:  func(f *fixture) workload { return orderWorkload([]int64{f.hotOrderID}) }},
	{Name: "list-replica", Server: "api-perf-replica", Ceiling: "api-perf-pair",
		About: "GET /products?limit=20 rotating through the pages of " + strconv.Itoa(listProducts) + " products, with MYSQL_READ_DSN set to a GTID replica, " +
			"against the same pages read on the primary (api-perf-pair: no MYSQL_READ_DSN; the ceiling columns hold that baseline here, and the ratio is replica/primary). " +
			"bench starts a private MariaDB primary and replica on this machine, so this shows what reading lists on a replica costs, not how it scales; for information",
		Load: func(f *fixture) workload { return listWorkload(f.listPaths) }},
	{Name: "get-embedded", Server: "api-perf-embedded",
		About: "warm GET /products/{id} on the embedded default (SQLite, in-process cache, limiter off); for information",
		Load:  func(f *fixture) workload { return getWorkload(f.embeddedHotID) }},
}

// crowdClients and crowdLimit shape the crowd scenario: many clients, each
// far from its own limit, so that a limiter that pays a Redis round trip
// per client and request shows.
const (
	crowdClients = 5000
	crowdLimit   = "1000/1s"
)

// crowdWorkload is the warm GET from crowdClients addresses in turn,
// 10.0.0.0/8 addresses forwarded by the loader's trusted address.
func crowdWorkload(id int64) workload {
	w := getWorkload(id)
	for i := range crowdClients {
		w.ForwardedFor = append(w.ForwardedFor, fmt.Sprintf("10.%d.%d.%d", i/62500, i/250%250, i%250+1))
	}
	return w
}

func getWorkload(ids ...int64) workload {
	w := workload{Method: http.MethodGet, OK: http.StatusOK}
	for _, id := range ids {
		w.Paths = append(w.Paths, "/products/"+strconv.FormatInt(id, 10))
	}
	return w
}

// listProducts is how many products the list scenarios page through.
const listProducts = 200

// listWorkload requests each page, from the first (no cursor) to the last.
func listWorkload(paths []string) workload {
	return workload{Method: http.MethodGet, Paths: paths, OK: http.StatusOK}
}

// listPages are the first-page path and one path per later page of 20,
// each with the cursor the API hands out (the last id of the page before).
func listPages(ids []int64) []string {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	paths := []string{"/products?limit=20"}
	for i := 19; i+1 < len(sorted); i += 20 {
		cursor := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(sorted[i], 10)))
		paths = append(paths, "/products?limit=20&cursor="+cursor)
	}
	return paths
}

// orderProducts are the products the order scenarios buy, restocked before
// every round.
func (f *fixture) orderProducts() []int64 {
	if f.hotOrderID == 0 {
		return f.orderIDs
	}
	return append(slices.Clone(f.orderIDs), f.hotOrderID)
}

func orderWorkload(ids []int64) workload {
	w := workload{Method: http.MethodPost, Paths: []string{"/orders"}, ContentType: "application/json", OK: http.StatusCreated}
	for _, id := range ids {
		w.Bodies = append(w.Bodies, fmt.Sprintf(`{"product_id":%d,"quantity":1}`, id))
	}
	return w
}

func scenarioNames() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.Name)
	}
	return out
}

func findScenario(name string) *scenario {
	for i := range scenarios {
		if scenarios[i].Name == name {
			return &scenarios[i]
		}
	}
	return nil
}
