package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"
)

// Who a request comes from, for the limiter, the access log and API keys.
// docs/abuse.md describes the rules; the short version: a bearer token names
// the client only when it is a configured key, otherwise the client is its
// address; the address is the peer's unless the peer is a trusted proxy, and
// then the rightmost untrusted hop of the forwarding header; IPv6 addresses
// are grouped by a prefix, as one allocation (a /64) is one subscriber.

// ForwardedHeader names the header a trusted proxy records the client in.
type ForwardedHeader int

// The headers: X-Forwarded-For (the default, what HAProxy, nginx and the AWS
// and Google load balancers send), or RFC 7239 Forwarded. Only one is read:
// a proxy that sets one passes the other through from the client untouched.
const (
	XForwardedFor ForwardedHeader = iota
	Forwarded
)

// apiKey is a configured key as the server compares it: its SHA-256 digest,
// so that the comparison takes the same time whatever the token's length,
// and the limiter's name for its holder, which reveals nothing of the key.
type apiKey struct {
	digest [sha256.Size]byte
	name   string
}

func newAPIKey(k string) apiKey {
	return apiKey{digest: sha256.Sum256([]byte(k)), name: "key:" + strconv.FormatUint(xxhash.Sum64String(k), 16)}
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
// The scheme's name is case-insensitive and is followed by at least one
// space (RFC 9110 §11.1, §11.4); tabs are tolerated.
func bearer(ctx *fasthttp.RequestCtx) []byte {
	h := ctx.Request.Header.Peek("Authorization")
	if len(h) > 7 && bytes.EqualFold(h[:6], []byte("bearer")) && (h[6] == ' ' || h[6] == '\t') {
		return trimSpace(h[7:])
	}
	return nil
}

// Results of keyIndex that name no configured key.
const (
	noToken = -1 // no bearer token, or no keys are configured
	notAKey = -2 // a bearer token that is none of the configured keys
)

// keyIndex is the index of the configured key the bearer token equals, or
// noToken or notAKey. The token's digest is compared with every key's, each
// comparison in constant time over fixed-length digests, so neither the
// content nor the length of a key leaks through timing.
func (s *Server) keyIndex(ctx *fasthttp.RequestCtx) int {
	if len(s.keys) == 0 {
		return noToken
	}
	tok := bearer(ctx)
	if len(tok) == 0 {
		return noToken
	}
	d := sha256.Sum256(tok)
	found := notAKey
	for i := range s.keys {
		found = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(d[:], s.keys[i].digest[:]), i, found)
	}
	return found
}

// clientKey names the request's client for the limiter: the configured key
// it authenticated with (key is its index, negative for none), else its address.
// A token that is not a configured key names nothing: otherwise every made-up
// token would open a fresh allowance.
func (s *Server) clientKey(ctx *fasthttp.RequestCtx, key int, dst []byte) []byte {
	if key >= 0 {
		return append(dst, s.keys[key].name...)
	}
	return s.appendAddrKey(dst, s.clientIP(ctx))
}

// appendAddrKey appends the limiter's name for the client at ip: the address
// itself for IPv4, its prefix of cfg.IPv6Prefix bits for IPv6.
func (s *Server) appendAddrKey(dst []byte, ip netip.Addr) []byte {
	dst = append(dst, "ip:"...)
	if ip.Is6() && s.cfg.IPv6Prefix < 128 {
		p, err := ip.Prefix(s.cfg.IPv6Prefix)
		if err == nil {
			dst = p.Addr().AppendTo(dst)
			dst = append(dst, '/')
			return strconv.AppendInt(dst, int64(s.cfg.IPv6Prefix), 10)
		}
	}
	return ip.AppendTo(dst)
}

// clientIP is the peer's address, or, when the peer is a trusted proxy, the
// rightmost hop of the forwarding header that is not itself a trusted proxy.
// Every line of the header counts, in order, as one list (RFC 9110 5.3): a
// proxy that appends a line of its own leaves the client's first, and reading
// only that first line would let the client name itself. A hop that does not
// parse ends the walk at the last trusted hop before it.
func (s *Server) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	ip, _ := netip.AddrFromSlice(ctx.RemoteIP())
	ip = ip.Unmap()
	if len(s.cfg.TrustedProxies) == 0 || !s.trusted(ip) {
		return ip
	}
	name := "X-Forwarded-For"
	if s.cfg.ForwardedHeader == Forwarded {
		name = "Forwarded"
	}
	lines := ctx.Request.Header.PeekAll(name)
	for l := len(lines) - 1; l >= 0; l-- {
		list := lines[l]
		for len(list) > 0 {
			var elem []byte
			elem, list = lastElement(list)
			elem = trimSpace(elem)
			if len(elem) == 0 {
				continue // RFC 9110 5.6.1: empty list elements do not count
			}
			if s.cfg.ForwardedHeader == Forwarded {
				elem = forwardedFor(elem)
			}
			a, ok := parseHop(elem)
			if !ok {
				return ip
			}
			if !s.trusted(a) {
				return a
			}
			ip = a
		}
	}
	return ip
}

// lastElement splits a comma-separated list before its last element,
// ignoring commas inside quoted strings.
func lastElement(list []byte) (elem, rest []byte) {
	quoted := false
	for i := len(list) - 1; i >= 0; i-- {
		switch list[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return list[i+1:], list[:i]
			}
		}
	}
	return list, nil
}

// forwardedFor is the value of the for parameter of one Forwarded element
// (RFC 7239 4), unquoted, or nil.
func forwardedFor(elem []byte) []byte {
	for len(elem) > 0 {
		pair := elem
		if i := bytes.IndexByte(elem, ';'); i >= 0 {
			pair, elem = elem[:i], elem[i+1:]
		} else {
			elem = nil
		}
		pair = trimSpace(pair)
		if len(pair) > 4 && (pair[0]|0x20) == 'f' && (pair[1]|0x20) == 'o' && (pair[2]|0x20) == 'r' && pair[3] == '=' {
			v := pair[4:]
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return nil
}

// parseHop parses one hop: an address, or an address with a port
// ("192.0.2.1:4711", "[2001:db8::1]:4711", "[2001:db8::1]"), as some
// proxies write them. Obfuscated identifiers and "unknown" do not parse.
func parseHop(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 64 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(b2s(b))
	if err == nil {
		return a.Unmap().WithZone(""), true
	}
	if b[0] == '[' && b[len(b)-1] == ']' {
		a, err = netip.ParseAddr(b2s(b[1 : len(b)-1]))
	} else {
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(b2s(b))
		a = ap.Addr()
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// b2s views b as a string without copying, for parsers that keep nothing
// of their input.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
