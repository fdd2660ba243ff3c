package server

import (
	"net"
	"net/netip"
	"testing"

	"github.com/valyala/fasthttp"
)

// requestFrom is a request ctx from peer with the given header lines (name,
// value pairs; a name may repeat).
func requestFrom(peer string, header ...string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod("GET")
	req.SetRequestURI("/products")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(peer), Port: 4711}, nil)
	return ctx
}

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	xff := mustNew(t, Config{TrustedProxies: proxies})
	fwd := mustNew(t, Config{TrustedProxies: proxies, ForwardedHeader: Forwarded})
	direct := mustNew(t, Config{})
	for _, tc := range []struct {
		name   string
		s      *Server
		peer   string
		header []string
		want   string
	}{
		{"no proxies: the peer", direct, "203.0.113.7", []string{"X-Forwarded-For", "1.2.3.4"}, "203.0.113.7"},
		{"untrusted peer's header ignored", xff, "203.0.113.7", []string{"X-Forwarded-For", "1.2.3.4"}, "203.0.113.7"},
		{"one hop", xff, "10.0.0.1", []string{"X-Forwarded-For", "198.51.100.9"}, "198.51.100.9"},
		{"forged first entry", xff, "10.0.0.1", []string{"X-Forwarded-For", "6.6.6.6, 198.51.100.9"}, "198.51.100.9"},
		{"forged first line, proxy's own second line", xff, "10.0.0.1",
			[]string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "198.51.100.9"}, "198.51.100.9"},
		{"two lines, trusted hops last", xff, "10.0.0.1",
			[]string{"X-Forwarded-For", "6.6.6.6, 198.51.100.9", "X-Forwarded-For", "10.1.1.1, 10.2.2.2"}, "198.51.100.9"},
		{"garbage left of the client is never read", xff, "10.0.0.1",
			[]string{"X-Forwarded-For", "not an address, 198.51.100.9"}, "198.51.100.9"},
		{"garbage where the client should be: the last trusted hop", xff, "10.0.0.1",
			[]string{"X-Forwarded-For", "198.51.100.9, <script>"}, "10.0.0.1"},
		{"garbage behind a trusted hop", xff, "10.0.0.1",
			[]string{"X-Forwarded-For", "bogus, 10.9.9.9"}, "10.9.9.9"},
		{"empty elements skipped", xff, "10.0.0.1", []string{"X-Forwarded-For", "198.51.100.9,, ,"}, "198.51.100.9"},
		{"address with port", xff, "10.0.0.1", []string{"X-Forwarded-For", "198.51.100.9:4711"}, "198.51.100.9"},
		{"IPv6 with brackets and port", xff, "10.0.0.1", []string{"X-Forwarded-For", "[2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv4-mapped IPv6 unmapped", xff, "10.0.0.1", []string{"X-Forwarded-For", "::ffff:198.51.100.9"}, "198.51.100.9"},
		{"zone dropped", xff, "10.0.0.1", []string{"X-Forwarded-For", "fe80::1%eth0"}, "fe80::1"},
		{"all trusted: the leftmost", xff, "10.0.0.1", []string{"X-Forwarded-For", "10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"no header from a trusted peer", xff, "10.0.0.1", nil, "10.0.0.1"},
		{"Forwarded ignored when X-Forwarded-For is the header", xff, "10.0.0.1",
			[]string{"Forwarded", "for=198.51.100.9"}, "10.0.0.1"},
		{"Forwarded", fwd, "10.0.0.1", []string{"Forwarded", `for=6.6.6.6, for=198.51.100.9;proto=https;by=10.0.0.1`}, "198.51.100.9"},
		{"Forwarded quoted IPv6 with port", fwd, "10.0.0.1", []string{"Forwarded", `For="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17"},
		{"Forwarded two lines", fwd, "10.0.0.1", []string{"Forwarded", "for=6.6.6.6", "Forwarded", "for=198.51.100.9"}, "198.51.100.9"},
		{"Forwarded obfuscated: the last trusted hop", fwd, "10.0.0.1", []string{"Forwarded", "for=_hidden"}, "10.0.0.1"},
		{"Forwarded unknown", fwd, "10.0.0.1", []string{"Forwarded", "for=unknown, for=10.5.5.5"}, "10.5.5.5"},
		{"X-Forwarded-For ignored when Forwarded is the header", fwd, "10.0.0.1",
			[]string{"X-Forwarded-For", "198.51.100.9"}, "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.clientIP(requestFrom(tc.peer, tc.header...)).String(); got != tc.want {
				t.Fatalf("clientIP = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestClientKey(t *testing.T) {
	const key = "0123456789abcdef-key"
	s := mustNew(t, Config{APIKeys: []string{"another-key-of-16+", key}})
	s64 := mustNew(t, Config{})
	s56 := mustNew(t, Config{IPv6Prefix: 56})
	s128 := mustNew(t, Config{IPv6Prefix: 128})
	name := func(s *Server, ctx *fasthttp.RequestCtx) string {
		return string(s.clientKey(ctx, s.keyIndex(ctx), nil))
	}
	for _, tc := range []struct {
		name string
		s    *Server
		ctx  *fasthttp.RequestCtx
		want string
	}{
		{"no token", s, requestFrom("203.0.113.7"), "ip:203.0.113.7"},
		{"made-up token: the address", s, requestFrom("203.0.113.7", "Authorization", "Bearer made-up-token-0001"), "ip:203.0.113.7"},
		{"a key's prefix", s, requestFrom("203.0.113.7", "Authorization", "Bearer "+key[:10]), "ip:203.0.113.7"},
		{"a key with more", s, requestFrom("203.0.113.7", "Authorization", "Bearer "+key+"x"), "ip:203.0.113.7"},
		{"token with no keys configured", s64, requestFrom("203.0.113.7", "Authorization", "Bearer "+key), "ip:203.0.113.7"},
		{"IPv6 grouped by /64", s64, requestFrom("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "ip:2001:db8:1:2::/64"},
		{"IPv6 grouped by /56", s56, requestFrom("2001:db8:1:2ff:aaaa:bbbb:cccc:dddd"), "ip:2001:db8:1:200::/56"},
		{"IPv6 not grouped", s128, requestFrom("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "ip:2001:db8:1:2:aaaa:bbbb:cccc:dddd"},
		{"IPv4 never grouped", s56, requestFrom("203.0.113.7"), "ip:203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := name(tc.s, tc.ctx); got != tc.want {
				t.Fatalf("clientKey = %s, want %s", got, tc.want)
			}
		})
	}
	got := name(s, requestFrom("203.0.113.7", "Authorization", "Bearer "+key))
	if got == "ip:203.0.113.7" || got != name(s, requestFrom("198.51.100.1", "Authorization", "bearer "+key)) {
		t.Fatalf("a configured key names its holder wherever it comes from; got %s", got)
	}
	if got == name(s, requestFrom("203.0.113.7", "Authorization", "Bearer another-key-of-16+")) {
		t.Fatal("two keys, one name")
	}
}

// TestKeyIndex_NoAllocs: checking a token costs no allocation.
func TestKeyIndex_NoAllocs(t *testing.T) {
	s := mustNew(t, Config{APIKeys: []string{"0123456789abcdef-key"}})
	ctx := requestFrom("203.0.113.7", "Authorization", "Bearer 0123456789abcdef-key")
	var buf [80]byte
	if n := testing.AllocsPerRun(100, func() {
		if s.keyIndex(ctx) != 0 {
			t.Fatal("key not found")
		}
		s.clientKey(ctx, -1, buf[:0])
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
