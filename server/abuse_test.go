package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/limiter"
	"github.com/api-perf/api-perf/server"
)

// The abuse suite: hostile clients attack one server while a well-behaved
// client keeps using it. Every attacker comes from its own loopback address
// (Linux routes all of 127.0.0.0/8 to lo), the well-behaved client from
// 127.0.0.1, and a trusted proxy from 127.0.0.3. The suite asserts counts,
// not times: each attack gets the answers it should, and the well-behaved
// client gets a 2xx for every request, before, during and after.

const (
	abuseKey      = "abuse-suite-api-key-0001"
	abuseProxy    = "127.0.0.3"
	idleConns     = 5000
	perClientCap  = 64
	abuseReadRate = 60
)

// countingPinger is a readiness check that counts its pings.
type countingPinger struct{ n atomic.Int64 }

func (p *countingPinger) Ping(context.Context) error { p.n.Add(1); return nil }

// clientFrom is an HTTP client whose connections leave from src.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16}}
}

// abuseRequest is one request of an attack or of the well-behaved client.
type abuseRequest struct {
	method, path, body string
	header             http.Header
}

// send sends r with c and returns the status, 0 for a transport error.
func (ts *testServer) send(c *http.Client, r abuseRequest) (int, error) {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, ts.URL+r.path, body)
	if err != nil {
		return 0, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

func TestAbuse(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of connections; skipped with -short")
	}
	lim := limiter.NewLocal()
	t.Cleanup(lim.Close)
	ready := &countingPinger{}
	db := openStore(t, "sqlite", "")
	ts := startServer(t, db, server.Config{
		Limiter: lim,
		// Per hour, so that no allowance refills while the suite runs and
		// the counts do not depend on how fast the machine is.
		ReadLimit:         apiperf.RatePolicy{Name: "read", Rate: abuseReadRate, Period: time.Hour, Burst: abuseReadRate},
		WriteLimit:        apiperf.RatePolicy{Name: "write", Rate: 100_000, Period: time.Hour, Burst: 100_000},
		AuthFailureLimit:  apiperf.RatePolicy{Name: "auth", Rate: 10, Period: time.Hour, Burst: 10},
		APIKeys:           []string{abuseKey},
		TrustedProxies:    []netip.Prefix{netip.MustParsePrefix(abuseProxy + "/32")},
		Ready:             []server.Check{{Name: "database", Pinger: ready}},
		MaxConnsPerClient: perClientCap,
		// Long enough that idle connections are still held when counted,
		// short enough that slowloris connections are cut in the suite.
		ReadTimeout: 5 * time.Second,
		IdleTimeout: 30 * time.Second,
	})
	addr := strings.TrimPrefix(ts.URL, "http://")
	keyed := http.Header{"Authorization": {"Bearer " + abuseKey}}
	if s, err := ts.send(clientFrom("127.0.0.1"), abuseRequest{"POST", "/products", `{"name":"p","price":1,"stock":1000000}`, keyed}); s != 201 {
		t.Fatalf("setup: %d %v", s, err)
	}

	// The well-behaved client: an API key holder reading and ordering, one
	// request at a time, for as long as the attacks last.
	var normal struct {
		sync.Mutex
		statuses statuses
		errs     []error
	}
	normal.statuses = statuses{}
	stop := make(chan struct{})
	normalDone := make(chan struct{})
	go func() {
		defer close(normalDone)
		c := clientFrom("127.0.0.1")
		reqs := []abuseRequest{
			{"GET", "/products/1", "", keyed},
			{"POST", "/orders", `{"product_id":1,"quantity":1}`, keyed},
			{"GET", "/healthz", "", nil},
			{"POST", "/orders", `{"product_id":1,"quantity":1}`, keyed},
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s, err := ts.send(c, reqs[i%len(reqs)])
			normal.Lock()
			normal.statuses[s]++
			if err != nil {
				normal.errs = append(normal.errs, err)
			}
			normal.Unlock()
			// Well-behaved: 1.25 reads a second, within the read policy's
			// burst of 60 for 48 s, far longer than the suite runs.
			time.Sleep(200 * time.Millisecond)
		}
	}()

	attacks := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"RandomTokens", func(t *testing.T) {
			c := clientFrom("127.0.0.2")
			got := statuses{}
			for range 3 * abuseReadRate {
				s, _ := ts.send(c, abuseRequest{"GET", "/products/1", "", http.Header{"Authorization": {randomToken()}}})
				got[s]++
			}
			// Each made-up token is a failed authentication: the address's
			// ten failures, then 429s.
			got.want(t, "reads with made-up tokens", statuses{200: 10, 429: 3*abuseReadRate - 10})
		}},
		{"KeyGuessing", func(t *testing.T) {
			c := clientFrom("127.0.0.6")
			got := statuses{}
			for range 40 {
				s, _ := ts.send(c, abuseRequest{"POST", "/products", `{"name":"x","price":1}`, http.Header{"Authorization": {randomToken()}}})
				got[s]++
			}
			got.want(t, "writes with guessed keys", statuses{401: 10, 429: 30})
		}},
		{"ForgedForwardedFor", func(t *testing.T) {
			c := clientFrom(abuseProxy)
			got := statuses{}
			for i := range 3 * abuseReadRate {
				var xff []string
				switch i % 3 {
				case 0: // one line, the forgery first
					xff = []string{randomIPv4() + ", 198.51.100.7"}
				case 1: // two lines, the proxy's own last
					xff = []string{randomIPv4(), "198.51.100.7"}
				case 2: // garbage before the proxy's entry
					xff = []string{"<script>, ::::, " + strings.Repeat("9", 300) + ", 198.51.100.7"}
				}
				s, _ := ts.send(c, abuseRequest{"GET", "/products/1", "", http.Header{"X-Forwarded-For": xff}})
				got[s]++
			}
			got.want(t, "reads with forged X-Forwarded-For", statuses{200: abuseReadRate, 429: 2 * abuseReadRate})
		}},
		{"IPv6Rotation", func(t *testing.T) {
			c := clientFrom(abuseProxy)
			got := statuses{}
			for i := range 3 * abuseReadRate {
				ip := fmt.Sprintf("2001:db8:aa:bb:%x:%x:%x:%x", i, i*7, i*13, i*31)
				s, _ := ts.send(c, abuseRequest{"GET", "/products/1", "", http.Header{"X-Forwarded-For": {ip}}})
				got[s]++
			}
			got.want(t, "reads rotating addresses within a /64", statuses{200: abuseReadRate, 429: 2 * abuseReadRate})
		}},
		{"HugeHeaders", func(t *testing.T) {
			got := statuses{}
			for range 5 {
				got[rawStatus(t, "127.0.0.7", addr, "GET /products/1 HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 200<<10)+"\r\n\r\n")]++
			}
			got.want(t, "200 KB of headers", statuses{431: 5})
		}},
		{"IdleConnections", func(t *testing.T) {
			// What the server holds is read on the server: from outside, a
			// connection still in the kernel's accept queue looks held too.
			most := 0
			done := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					most = max(most, ts.Srv.ClientConns(netip.MustParseAddr("127.0.0.4")))
					select {
					case <-done:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			answered := idleConnections(t, "127.0.0.4", addr, idleConns)
			close(done)
			<-sampled
			if most > perClientCap || most == 0 {
				t.Fatalf("the server held up to %d connections of one client, cap %d", most, perClientCap)
			}
			if answered == 0 {
				t.Fatal("no connection over the cap was answered 503")
			}
			t.Logf("%d idle connections from one address: at most %d held at once, %d answered 503", idleConns, most, answered)
		}},
		{"Slowloris", func(t *testing.T) {
			var wg sync.WaitGroup
			var cut atomic.Int64
			for i := range 2 * perClientCap {
				req := "GET /products/1 HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("s", 300) + "\r\n\r\n"
				if i%2 == 1 {
					req = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n" + strings.Repeat(" ", 400)
				}
				wg.Go(func() {
					conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}).Dial("tcp", addr)
					if err != nil {
						return
					}
					defer conn.Close()
					conn.SetDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck
					go trickle(conn, req, 20*time.Millisecond)
					if _, err := io.ReadAll(conn); err == nil || !isTimeout(err) {
						cut.Add(1) // answered (408 or 503) and closed, or reset
					}
				})
			}
			wg.Wait()
			if cut.Load() != 2*perClientCap {
				t.Fatalf("%d of %d trickling connections cut by the server", cut.Load(), 2*perClientCap)
			}
		}},
		{"ReadyzFlood", func(t *testing.T) {
			before := ready.n.Load()
			start := time.Now()
			var wg sync.WaitGroup
			got := make([]statuses, 8)
			for w := range got {
				got[w] = statuses{}
				wg.Go(func() {
					c := clientFrom("127.0.0.8")
					for range 250 {
						s, _ := ts.send(c, abuseRequest{"GET", "/readyz", "", nil})
						got[w][s]++
					}
				})
			}
			wg.Wait()
			pings := ready.n.Load() - before
			// One round per second at most: the flood's length in seconds,
			// rounded up, plus the round already cached when it began.
			if limit := int64(time.Since(start)/time.Second) + 2; pings > limit {
				t.Fatalf("2000 probes pinged the database %d times, want at most %d", pings, limit)
			}
			for _, g := range got {
				if g[200] != 250 {
					t.Fatalf("/readyz flood: %v", g)
				}
			}
			t.Logf("2000 probes, %d pings", pings)
		}},
	}
	t.Run("Attacks", func(t *testing.T) {
		for _, a := range attacks {
			t.Run(a.name, func(t *testing.T) {
				t.Parallel()
				a.run(t)
			})
		}
	})
	close(stop)
	<-normalDone
	var served int
	for s, n := range normal.statuses {
		if s < 200 || s > 299 {
			t.Errorf("the well-behaved client got %d × %d (errors: %v)", n, s, normal.errs)
		}
		served += n
	}
	if served < 10 {
		t.Errorf("the well-behaved client made only %d requests", served)
	}
	t.Logf("the well-behaved client: %v", normal.statuses)
}

// rawStatus sends req from src over a fresh connection and returns the
// answer's status, or 0 when there is none.
func rawStatus(t *testing.T, src, addr, req string) int {
	t.Helper()
	conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second)) //nolint:errcheck
	go func() { io.WriteString(conn, req) }()          //nolint:errcheck // the server may stop reading
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	if res.StatusCode >= 400 && res.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("status %d as %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return res.StatusCode
}

// idleConnections opens n connections from src that send nothing, and
// returns how many were answered with a 503 problem (a connection over the
// cap when the server has no goroutine free to answer it is closed
// unanswered); it closes them all.
func idleConnections(t *testing.T, src, addr string, n int) int {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}).Dial("tcp", addr)
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var answered atomic.Int64
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(2 * time.Second)) //nolint:errcheck
			b, _ := io.ReadAll(c)
			if strings.HasPrefix(string(b), "HTTP/1.1 503 ") && strings.Contains(string(b), "application/problem+json") {
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	return int(answered.Load())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
