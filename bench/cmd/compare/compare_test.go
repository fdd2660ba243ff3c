package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestParseWrk(t *testing.T) {
	out := []byte("Running 3s test @ http://127.0.0.1:1/products/1\n  1 threads and 64 connections\n" +
		`BENCHJSON {"requests":30000,"duration_us":3000000,"connect":1,"read":2,"write":0,"timeout":3,"status":4,"p50_us":1250.5,"p99_us":9000.0}` + "\n")
	m, err := parseWrk(out, 200)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests != 30000 || m.Errors != 10 || m.RPS != 10000 {
		t.Errorf("got %+v, want 30000 requests, 10 errors, 10000 req/s", m)
	}
	if m.P50 != 1250500*time.Nanosecond || m.P99 != 9*time.Millisecond {
		t.Errorf("got p50 %v p99 %v, want 1.2505ms and 9ms", m.P50, m.P99)
	}
	t.Run("NoResultLine", func(t *testing.T) {
		if _, err := parseWrk([]byte("unable to connect to 127.0.0.1:1 Connection refused\n"), 200); err == nil {
			t.Error("want an error when wrk printed no result")
		}
	})
}

func TestWrkScript(t *testing.T) {
	t.Run("ConstantRequest", func(t *testing.T) {
		s := wrkScript(getWorkload(7))
		if strings.Contains(s, "request = function") {
			t.Errorf("a single path must not define request(), wrk then builds the request once:\n%s", s)
		}
		if !strings.Contains(s, `wrk.method = "GET"`) || !strings.Contains(s, "done = function") {
			t.Errorf("missing method or done():\n%s", s)
		}
	})
	t.Run("RotatingBodies", func(t *testing.T) {
		s := wrkScript(orderWorkload([]int64{1, 2}))
		for _, want := range []string{`wrk.method = "POST"`, `wrk.headers["Content-Type"] = "application/json"`,
			`"{\"product_id\":1,\"quantity\":1}"`, `"{\"product_id\":2,\"quantity\":1}"`, "request = function"} {
			if !strings.Contains(s, want) {
				t.Errorf("script lacks %s:\n%s", want, s)
			}
		}
	})
}

func TestLuaString(t *testing.T) {
	for in, want := range map[string]string{`a"b`: `"a\"b"`, `c\d`: `"c\\d"`, "e\nf": `"e\010f"`, "é": `"\195\169"`} {
		if got := luaString(in); got != want {
			t.Errorf("luaString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestCell_Finish checks the ratio is the median of per-round ratios, not
// the ratio of medians.
func TestCell_Finish(t *testing.T) {
	us := time.Microsecond
	c := cell{Server: series{Runs: []measurement{{RPS: 90, CPUPerReq: 50 * us}, {RPS: 50, CPUPerReq: 40 * us}, {RPS: 80, CPUPerReq: 25 * us}}},
		Ceiling: &series{Runs: []measurement{{RPS: 100, CPUPerReq: 20 * us}, {RPS: 50, CPUPerReq: 20 * us}, {RPS: 100, CPUPerReq: 20 * us}}}}
	c.finish()
	if c.Ratio != 0.9 {
		t.Errorf("ratio %v, want 0.9 (per-round 0.9, 1.0, 0.8)", c.Ratio)
	}
	if c.CPURatio != 0.5 {
		t.Errorf("CPU ratio %v, want 0.5 (per-round 0.4, 0.5, 0.8)", c.CPURatio)
	}
	if c.Server.Median.CPUPerReq != 40*us {
		t.Errorf("median CPU per request %v, want 40µs", c.Server.Median.CPUPerReq)
	}
	if c.Server.Median.RPS != 80 || c.Ceiling.Median.RPS != 100 {
		t.Errorf("medians %v / %v, want 80 / 100", c.Server.Median.RPS, c.Ceiling.Median.RPS)
	}
}

func sampleReport() *report {
	r := &report{Command: "go run ./bench/cmd/compare", Machine: map[string]string{"cpu": "Test <CPU> & co", "nproc": "2"},
		Loader: "wrk", Rounds: 1, Duration: "1s"}
	for _, conns := range []int{16, 64, 256} {
		r.Cells = append(r.Cells,
			cell{Scenario: "get-cached", Conns: conns, Target: 0.9,
				Server:  series{Target: "api-perf", Runs: []measurement{{RPS: 50000 + float64(conns), P99: 2 * time.Millisecond}}},
				Ceiling: &series{Target: "static", Runs: []measurement{{RPS: 60000, P99: time.Millisecond}}}},
			cell{Scenario: "get-embedded", Conns: conns,
				Server: series{Target: "api-perf-embedded", Runs: []measurement{{RPS: 30000, P99: 40 * time.Millisecond}}}})
	}
	for i := range r.Cells {
		r.Cells[i].finish()
	}
	return r
}

func TestRenderChart(t *testing.T) {
	svg, err := renderChart(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	// The document must be well-formed XML, with the escaped CPU name and
	// one polyline per series and panel (3 series x 2 panels).
	dec := xml.NewDecoder(bytes.NewReader(svg))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 6 {
		t.Errorf("%d polylines, want 6", polylines)
	}
	if !bytes.Contains(svg, []byte("Test &lt;CPU&gt; &amp; co")) {
		t.Error("the CPU name is not escaped")
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	writeTable(&b, sampleReport())
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines, want header, rule and 6 rows:\n%s", len(lines), b.String())
	}
	if !strings.Contains(lines[2], "| get-cached | 16 | 50016 |") || !strings.Contains(lines[2], "0.83x") ||
		!strings.Contains(lines[2], "**missed**") {
		t.Errorf("first row %q: want 50016 req/s, ratio 0.83x, target missed", lines[2])
	}
	if !strings.Contains(lines[3], "| get-embedded | 16 |") || !strings.Contains(lines[3], "info") {
		t.Errorf("second row %q: want the information-only scenario", lines[3])
	}
}

// TestBuiltinLoader drives a local fasthttp server and checks counts and
// error accounting.
func TestBuiltinLoader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/bad" {
			ctx.SetStatusCode(fasthttp.StatusConflict)
		}
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown below
	defer srv.Shutdown()
	addr := ln.Addr().String()
	m, err := builtinLoader{}.Run(context.Background(), addr, getWorkload(1, 2), 4, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests == 0 || m.Errors != 0 || m.RPS <= 0 || m.P99 < m.P50 {
		t.Errorf("good workload: %+v", m)
	}
	w := workload{Method: "GET", Paths: []string{"/bad"}, OK: 200}
	m, err = builtinLoader{}.Run(context.Background(), addr, w, 2, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if m.Errors != m.Requests || m.Requests == 0 {
		t.Errorf("every 409 must count as an error: %+v", m)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if o.rounds != 1 || len(o.conns) != 1 || o.conns[0] != 64 || len(o.scenarios) != len(scenarios) {
		t.Errorf("-quick: %+v", o)
	}
	if _, err := parseFlags([]string{"-scenarios", "nope"}); err == nil {
		t.Error("an unknown scenario must be refused")
	}
	if _, err := parseFlags([]string{"-conns", "16,x"}); err == nil {
		t.Error("a bad -conns must be refused")
	}
	o, err = parseFlags([]string{"-pprof", "-pprof-scenario", "get-uncached"})
	if err != nil || len(o.scenarios) != 1 || o.scenarios[0] != "get-uncached" {
		t.Errorf("-pprof -pprof-scenario get-uncached: scenarios %v, err %v", o.scenarios, err)
	}
}

// TestListPages: the list scenarios request the first page and one page
// per 20 products after it, each with the cursor the API would hand out.
func TestListPages(t *testing.T) {
	ids := make([]int64, 45)
	for i := range ids {
		ids[i] = int64(45 - i) // seeding returns ids in any order
	}
	got := listPages(ids)
	want := []string{"/products?limit=20", "/products?limit=20&cursor=MjA", "/products?limit=20&cursor=NDA"}
	if !slices.Equal(got, want) {
		t.Fatalf("listPages = %v, want %v", got, want)
	}
}
