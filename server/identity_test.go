package server_test

import (
	"crypto/rand"
	"net/http"
	"net/netip"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/limiter"
	"github.com/api-perf/api-perf/server"
)

// randomToken is a bearer token no server has configured.
func randomToken() string { return "Bearer " + rand.Text() }

// statuses counts answers by status.
type statuses map[int]int

func (s statuses) want(tb testing.TB, what string, want statuses) {
	tb.Helper()
	if len(s) != len(want) {
		tb.Fatalf("%s: statuses %v, want %v", what, s, want)
	}
	for k, v := range want {
		if s[k] != v {
			tb.Fatalf("%s: statuses %v, want %v", what, s, want)
		}
	}
}

func newLimited(tb testing.TB, cfg server.Config) *testServer {
	tb.Helper()
	lim := limiter.NewLocal()
	tb.Cleanup(lim.Close)
	cfg.Limiter = lim
	return startServer(tb, openStore(tb, "sqlite", ""), cfg)
}

// TestAPI_MadeUpTokensShareTheAddress: a bearer token names the client only
// when it is a configured key. Before, every made-up token opened a fresh
// allowance, and 20 reads under a 5-per-minute policy all got 200.
func TestAPI_MadeUpTokensShareTheAddress(t *testing.T) {
	for _, keys := range [][]string{nil, {"0123456789abcdef-key"}} {
		ts := newLimited(t, server.Config{
			APIKeys:   keys,
			ReadLimit: apiperf.RatePolicy{Name: "read", Rate: 5, Period: time.Minute, Burst: 5},
		})
		got := statuses{}
		for range 20 {
			r := ts.do(t, "GET", "/products", "", "Authorization", randomToken())
			if r.Status != 200 {
				r.want(t, 429)
			}
			got[r.Status]++
		}
		got.want(t, "20 reads with made-up tokens", statuses{200: 5, 429: 15})
		if keys != nil {
			// The holder of a configured key has its own allowance.
			ts.do(t, "GET", "/products", "", "Authorization", "Bearer "+keys[0]).want(t, 200)
		}
	}
}

// TestAPI_KeyGuessingLimited: failed authentications are charged to the
// address and answered 429 once the allowance is spent. Before, 20 wrong
// keys got 20 × 401.
func TestAPI_KeyGuessingLimited(t *testing.T) {
	const key = "0123456789abcdef-key"
	ts := newLimited(t, server.Config{
		APIKeys:          []string{key},
		AuthFailureLimit: apiperf.RatePolicy{Name: "auth", Rate: 10, Period: time.Minute, Burst: 10},
	})
	got := statuses{}
	for i := range 20 {
		tok := randomToken()
		if i%3 == 0 {
			tok = "" // no token at all is a failure too
		}
		r := ts.do(t, "POST", "/products", `{"name":"a","price":1}`, "Authorization", tok)
		r.want(t, r.Status)
		if r.Status == 429 {
			r.want(t, 429)
			if r.Header.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %v", r.Header)
			}
		}
		got[r.Status]++
	}
	got.want(t, "20 writes with wrong keys", statuses{401: 10, 429: 10})
	if n := ts.count(t, "products"); n != 0 {
		t.Fatalf("%d products created without a key", n)
	}
	// The key's holder is not its address: it writes on.
	ts.do(t, "POST", "/products", `{"name":"a","price":1}`, "Authorization", "Bearer "+key).want(t, 201)
	// Reads need no key: without a token they are served after the failures.
	ts.do(t, "GET", "/products", "").want(t, 200)
	// But a read with a token that is no key is a failed authentication
	// too, or reads would test guessed keys at the read policy's speed.
	ts.do(t, "GET", "/products", "", "Authorization", randomToken()).want(t, 429)
	// The scheme's name is case-insensitive: a key holder writing BEARER is
	// its key, not a failure.
	ts.do(t, "POST", "/products", `{"name":"a","price":1}`, "Authorization", "BEARER  "+key).want(t, 201)
}

// TestAPI_ReadsDoNotTestKeys: reads with tokens that are no key are charged
// as failed authentications, so they cannot guess keys faster than writes.
func TestAPI_ReadsDoNotTestKeys(t *testing.T) {
	const key = "0123456789abcdef-key"
	ts := newLimited(t, server.Config{
		APIKeys:          []string{key},
		AuthFailureLimit: apiperf.RatePolicy{Name: "auth", Rate: 3, Period: time.Hour, Burst: 3},
	})
	got := statuses{}
	for range 20 {
		r := ts.do(t, "GET", "/products", "", "Authorization", randomToken())
		r.want(t, r.Status)
		got[r.Status]++
	}
	got.want(t, "20 reads with made-up tokens", statuses{200: 3, 429: 17})
	// The key's holder and clients without a token read on.
	ts.do(t, "GET", "/products", "", "Authorization", "bearer "+key).want(t, 200)
	ts.do(t, "GET", "/products", "").want(t, 200)
}

// TestAPI_ForgedForwardedFor: behind a proxy that appends its own
// X-Forwarded-For line, the client's forged first line does not name the
// client. Before, ten requests with a random first line all got 200 under
// a 3-per-minute policy.
func TestAPI_ForgedForwardedFor(t *testing.T) {
	ts := newLimited(t, server.Config{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ReadLimit:      apiperf.RatePolicy{Name: "read", Rate: 3, Period: time.Minute, Burst: 3},
	})
	got := statuses{}
	for range 10 {
		h := http.Header{"X-Forwarded-For": {randomIPv4(), "9.9.9.9"}}
		got[doHeader(t, ts, "/products", h).Status]++
	}
	got.want(t, "10 reads with forged first lines", statuses{200: 3, 429: 7})
	// Another real client behind the proxy has its own allowance.
	if r := doHeader(t, ts, "/products", http.Header{"X-Forwarded-For": {"9.9.9.10"}}); r.Status != 200 {
		t.Fatalf("another client: %d", r.Status)
	}
}

func randomIPv4() string {
	var b [4]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand does not fail
	return netip.AddrFrom4(b).String()
}

// doHeader sends a GET with header as it is, repeated lines included.
func doHeader(tb testing.TB, ts *testServer, path string, h http.Header) *response {
	tb.Helper()
	req, err := http.NewRequest("GET", ts.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var buf [4096]byte
	n, _ := res.Body.Read(buf[:])
	return &response{Status: res.StatusCode, Header: res.Header, Body: buf[:n]}
}
