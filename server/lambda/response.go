package lambda

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// header is one response header line; both slices point into the fasthttp
// response, which is not touched until the document is written.
type header struct{ k, v []byte }

// encodeResponse writes the handler's response as the JSON document the
// event's kind expects:
//
//   - v1: statusCode, headers with the single-valued headers, multiValueHeaders
//     with the repeated ones (API Gateway merges the two), body, isBase64Encoded;
//   - v2 and function URL: statusCode, headers (repeated ones joined with ", ",
//     which is what those payloads define), cookies with every Set-Cookie, body,
//     isBase64Encoded;
//   - ALB: statusCode, statusDescription ("200 OK"), then multiValueHeaders if
//     the request came with them (the target group has multi-value headers on
//     and reads nothing else), headers otherwise, body, isBase64Encoded.
//
// The document is built by hand into a reused buffer: it has a fixed shape,
// and doing so costs no allocation.
func (inv *invocation) encodeResponse(k kind) []byte {
	resp := &inv.ctx.Response
	status := resp.StatusCode()
	body := resp.Body()
	if resp.SkipBody || inv.ctx.IsHead() {
		// As a fasthttp server would: a HEAD answer has headers only.
		body = nil
	}
	noBody := len(body) == 0 && (status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified)

	pairs := inv.pairs[:0]
	for key, v := range resp.Header.All() {
		if skipResponseHeader(key) || noBody && bytes.EqualFold(key, strContentType) {
			continue
		}
		pairs = append(pairs, header{key, v})
	}
	inv.pairs = pairs

	out := append(inv.out[:0], `{"statusCode":`...)
	out = strconv.AppendInt(out, int64(status), 10)
	if k == kindALB {
		out = append(out, `,"statusDescription":"`...)
		out = strconv.AppendInt(out, int64(status), 10)
		out = append(out, ' ')
		out = append(out, fasthttp.StatusMessage(status)...)
		out = append(out, '"')
	}

	switch {
	case k == kindV1:
		out = appendHeaders(out, pairs, `,"headers":`, single)
		if hasRepeated(pairs) {
			out = appendHeaders(out, pairs, `,"multiValueHeaders":`, repeated)
		}
	case k == kindV2 || k == kindURL:
		out = appendHeaders(out, pairs, `,"headers":`, joinedNoCookies)
		out = appendCookies(out, pairs)
	case !isNull(inv.ev.MultiValueHeaders):
		out = appendHeaders(out, pairs, `,"multiValueHeaders":`, all)
	default:
		out = appendHeaders(out, pairs, `,"headers":`, joinedCookieCases)
	}

	out = append(out, `,"body":`...)
	if isBinary(resp, body) {
		out = append(out, '"')
		out = base64.StdEncoding.AppendEncode(out, body)
		out = append(out, `","isBase64Encoded":true}`...)
	} else {
		out = appendString(out, body)
		out = append(out, `,"isBase64Encoded":false}`...)
	}
	return out
}

// headerStyle selects which headers appendHeaders writes and how.
type headerStyle uint8

const (
	single            headerStyle = iota // names that occur once, as strings
	repeated                             // names that occur more than once, as arrays
	all                                  // every name, as arrays
	joinedNoCookies                      // every name but Set-Cookie, repeated values joined
	joinedCookieCases                    // every name, Set-Cookie spread over letter cases
)

// appendHeaders writes one JSON object of headers, grouping the values of a
// name in the order the handler set them. Responses have a handful of
// headers, so grouping by scanning is cheaper than any map.
func appendHeaders(out []byte, pairs []header, field string, style headerStyle) []byte {
	out = append(out, field...)
	out = append(out, '{')
	first := true
	cookieCase := 0
	for i, p := range pairs {
		if seenBefore(pairs, i) {
			continue
		}
		n := count(pairs, i)
		isCookie := bytes.EqualFold(p.k, strSetCookie)
		switch style {
		case single:
			if n > 1 {
				continue
			}
		case repeated:
			if n == 1 {
				continue
			}
		case joinedNoCookies:
			if isCookie {
				continue
			}
		case joinedCookieCases:
			if isCookie {
				// One object cannot hold a name twice, and an ALB target group
				// without multi-value headers reads only this object; header
				// names are case-insensitive, so each cookie gets its own
				// spelling of Set-Cookie and the client still sees them all.
				for j := i; j < len(pairs); j++ {
					if !bytes.EqualFold(pairs[j].k, strSetCookie) || cookieCase >= maxCookieCases {
						continue
					}
					out = appendComma(out, &first)
					out = appendCookieName(out, cookieCase)
					out = append(out, ':')
					out = appendString(out, pairs[j].v)
					cookieCase++
				}
				continue
			}
		}
		out = appendComma(out, &first)
		out = appendString(out, p.k)
		out = append(out, ':')
		switch style {
		case single:
			out = appendString(out, p.v)
		case repeated, all:
			out = append(out, '[')
			for j := i; j < len(pairs); j++ {
				if j == i || bytes.EqualFold(pairs[j].k, p.k) {
					if j != i {
						out = append(out, ',')
					}
					out = appendString(out, pairs[j].v)
				}
			}
			out = append(out, ']')
		default:
			out = appendJoined(out, pairs, i, n)
		}
	}
	return append(out, '}')
}

// appendJoined writes the values of pairs[i]'s name as one string, joined
// with ", " as RFC 9110 allows for repeated fields.
func appendJoined(out []byte, pairs []header, i, n int) []byte {
	if n == 1 {
		return appendString(out, pairs[i].v)
	}
	// Build the joined value after the document; it is escaped into place
	// below and the scratch tail is cut off again.
	start := len(out)
	for j := i; j < len(pairs); j++ {
		if j == i || bytes.EqualFold(pairs[j].k, pairs[i].k) {
			if len(out) > start {
				out = append(out, ", "...)
			}
			out = append(out, pairs[j].v...)
		}
	}
	joined := out[start:]
	// appendString may grow out and overwrite joined while reading it, so the
	// escaped form is written after joined and then moved down.
	out = appendString(out, joined)
	n2 := copy(out[start:], out[start+len(joined):])
	return out[:start+n2]
}

// appendCookies writes the cookies array of a v2 or function URL response.
func appendCookies(out []byte, pairs []header) []byte {
	first := true
	for _, p := range pairs {
		if !bytes.EqualFold(p.k, strSetCookie) {
			continue
		}
		if first {
			out = append(out, `,"cookies":[`...)
			first = false
		} else {
			out = append(out, ',')
		}
		out = appendString(out, p.v)
	}
	if !first {
		out = append(out, ']')
	}
	return out
}

// maxCookieCases is the number of spellings of "set-cookie": two cases for
// each of its nine letters.
const maxCookieCases = 1 << 9

// appendCookieName writes the n-th spelling of Set-Cookie, the first being
// the canonical one.
func appendCookieName(out []byte, n int) []byte {
	const name = "set-cookie"
	const canonical = 1<<0 | 1<<3 // S and C
	mask := n ^ canonical
	out = append(out, '"')
	bit := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '-' {
			out = append(out, c)
			continue
		}
		if mask&(1<<bit) != 0 {
			c -= 'a' - 'A'
		}
		out = append(out, c)
		bit++
	}
	return append(out, '"')
}

func appendComma(out []byte, first *bool) []byte {
	if *first {
		*first = false
		return out
	}
	return append(out, ',')
}

// seenBefore reports whether pairs[i]'s name occurs earlier.
func seenBefore(pairs []header, i int) bool {
	for j := 0; j < i; j++ {
		if bytes.EqualFold(pairs[j].k, pairs[i].k) {
			return true
		}
	}
	return false
}

// count returns how often pairs[i]'s name occurs from i on.
func count(pairs []header, i int) int {
	n := 0
	for j := i; j < len(pairs); j++ {
		if bytes.EqualFold(pairs[j].k, pairs[i].k) {
			n++
		}
	}
	return n
}

func hasRepeated(pairs []header) bool {
	for i := range pairs {
		if !seenBefore(pairs, i) && count(pairs, i) > 1 {
			return true
		}
	}
	return false
}

// skipResponseHeader drops the headers that belong to a connection: the
// Lambda service frames the response itself.
func skipResponseHeader(k []byte) bool {
	return bytes.EqualFold(k, strContentLength) || bytes.EqualFold(k, strTransferEncoding) ||
		bytes.EqualFold(k, strConnection) || bytes.EqualFold(k, strTrailer)
}

// isBinary reports whether the body must travel base64-encoded: it is
// compressed, its media type is not text, or it is not valid UTF-8 (a JSON
// string cannot carry such bytes unchanged).
func isBinary(resp *fasthttp.Response, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	if ce := resp.Header.ContentEncoding(); len(ce) > 0 && !bytes.EqualFold(ce, []byte("identity")) {
		return true
	}
	if ct := resp.Header.ContentType(); len(ct) > 0 && !isTextType(ct) {
		return true
	}
	return !utf8.Valid(body)
}

// isTextType reports whether the media type of ct is textual.
func isTextType(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	typ, sub, ok := bytes.Cut(ct, []byte("/"))
	if !ok {
		return false
	}
	if bytes.EqualFold(typ, []byte("text")) {
		return true
	}
	if hasSuffixFold(sub, "+json") || hasSuffixFold(sub, "+xml") {
		return true
	}
	if !bytes.EqualFold(typ, []byte("application")) {
		return false
	}
	for _, t := range textApplicationTypes {
		if bytes.EqualFold(sub, []byte(t)) {
			return true
		}
	}
	return false
}

var textApplicationTypes = []string{
	"json", "xml", "javascript", "ecmascript", "x-www-form-urlencoded",
	"x-ndjson", "jsonl", "graphql", "yaml", "x-yaml", "sql", "csv",
}

func hasSuffixFold(s []byte, suffix string) bool {
	return len(s) >= len(suffix) && bytes.EqualFold(s[len(s)-len(suffix):], []byte(suffix))
}

var (
	strSetCookie   = []byte("Set-Cookie")
	strContentType = []byte("Content-Type")
	strConnection  = []byte("Connection")
	strTrailer     = []byte("Trailer")
)
