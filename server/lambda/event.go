package lambda

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	gojson "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"
)

// ErrUnsupportedEvent is returned by Invoke for a payload that is valid JSON
// but none of the four HTTP event shapes, such as an SQS message or a
// scheduled event routed to the function by mistake.
var ErrUnsupportedEvent = errors.New("lambda: unsupported event: want an API Gateway REST (v1), HTTP API (v2), function URL or ALB request")

// kind is the shape of an event; it also decides the shape of the answer.
type kind uint8

const (
	kindV1  kind = iota + 1 // events.APIGatewayProxyRequest
	kindV2                  // events.APIGatewayV2HTTPRequest
	kindURL                 // events.LambdaFunctionURLRequest
	kindALB                 // events.ALBTargetGroupRequest
)

// String names the kind the way AWS documents it, for logs and benchmarks.
func (k kind) String() string {
	switch k {
	case kindV1:
		return "apigw-v1"
	case kindV2:
		return "apigw-v2"
	case kindURL:
		return "function-url"
	case kindALB:
		return "alb"
	}
	return "unknown"
}

// envelope is the union of the four request shapes, reduced to the fields the
// adapter reads. Every field is raw JSON: goccy/go-json copies it into the
// field's reused backing array, so decoding a pooled envelope allocates
// nothing, and fields such as authorizer claims are skipped unread.
type envelope struct {
	Version           json.RawMessage `json:"version"`
	HTTPMethod        json.RawMessage `json:"httpMethod"`
	Path              json.RawMessage `json:"path"`
	RawPath           json.RawMessage `json:"rawPath"`
	RawQueryString    json.RawMessage `json:"rawQueryString"`
	Cookies           json.RawMessage `json:"cookies"`
	Headers           json.RawMessage `json:"headers"`
	MultiValueHeaders json.RawMessage `json:"multiValueHeaders"`
	Query             json.RawMessage `json:"queryStringParameters"`
	MultiValueQuery   json.RawMessage `json:"multiValueQueryStringParameters"`
	RequestContext    struct {
		Stage      json.RawMessage `json:"stage"`
		DomainName json.RawMessage `json:"domainName"`
		RequestID  json.RawMessage `json:"requestId"`
		Path       json.RawMessage `json:"path"`
		ELB        json.RawMessage `json:"elb"`
		Identity   struct {
			SourceIP json.RawMessage `json:"sourceIp"`
		} `json:"identity"`
		HTTP struct {
			Method   json.RawMessage `json:"method"`
			SourceIP json.RawMessage `json:"sourceIp"`
		} `json:"http"`
	} `json:"requestContext"`
	Body            json.RawMessage `json:"body"`
	IsBase64Encoded bool            `json:"isBase64Encoded"`
}

// reset empties every field but keeps the backing arrays for the next event;
// the decoder only writes the fields present in the payload.
func (e *envelope) reset() {
	e.Version = e.Version[:0]
	e.HTTPMethod = e.HTTPMethod[:0]
	e.Path = e.Path[:0]
	e.RawPath = e.RawPath[:0]
	e.RawQueryString = e.RawQueryString[:0]
	e.Cookies = e.Cookies[:0]
	e.Headers = e.Headers[:0]
	e.MultiValueHeaders = e.MultiValueHeaders[:0]
	e.Query = e.Query[:0]
	e.MultiValueQuery = e.MultiValueQuery[:0]
	rc := &e.RequestContext
	rc.Stage = rc.Stage[:0]
	rc.DomainName = rc.DomainName[:0]
	rc.RequestID = rc.RequestID[:0]
	rc.Path = rc.Path[:0]
	rc.ELB = rc.ELB[:0]
	rc.Identity.SourceIP = rc.Identity.SourceIP[:0]
	rc.HTTP.Method = rc.HTTP.Method[:0]
	rc.HTTP.SourceIP = rc.HTTP.SourceIP[:0]
	e.Body = e.Body[:0]
	e.IsBase64Encoded = false
}

// kind tells the four shapes apart by the fields only one of them has.
func (e *envelope) kind() kind {
	rc := &e.RequestContext
	switch {
	case !isNull(rc.ELB):
		return kindALB
	case !isNull(rc.HTTP.Method) && bytes.Equal(e.Version, []byte(`"2.0"`)):
		// A function URL event is an HTTP API v2 event without a stage or
		// route key; its domain is the only reliable mark. Both answer in the
		// same shape, so a custom domain in front of a URL is harmless.
		if bytes.Contains(rc.DomainName, []byte(".lambda-url.")) {
			return kindURL
		}
		return kindV2
	case !isNull(e.HTTPMethod) && (!isNull(rc.Stage) || !isNull(rc.RequestID)):
		// REST APIs and HTTP APIs with payload format 1.0 send this shape.
		return kindV1
	}
	return 0
}

// scratch holds the reused buffers of one invocation.
type scratch struct {
	key, val []byte // decoded keys and values, while they are copied into fasthttp
	str      []byte // decoded scalar strings (method, path, stage, ...)
	uri      []byte // the request URI being built
	body     []byte // the decoded request body
}

// decodeRequest fills req from the event payload and returns the event's kind
// and the client address (invalid when the event carries none).
func (inv *invocation) decodeRequest(payload []byte, h *Handler) (kind, netip.Addr, error) {
	ev := &inv.ev
	if err := gojson.Unmarshal(payload, ev); err != nil {
		return 0, netip.Addr{}, fmt.Errorf("lambda: decode event: %w", err)
	}
	k := ev.kind()
	if k == 0 {
		return 0, netip.Addr{}, ErrUnsupportedEvent
	}
	req := &inv.ctx.Request
	sc := &inv.sc
	rc := &ev.RequestContext

	// Method.
	rawMethod := ev.HTTPMethod
	if k == kindV2 || k == kindURL {
		rawMethod = rc.HTTP.Method
	}
	method, err := jsonString(rawMethod, &sc.str)
	if err != nil {
		return 0, netip.Addr{}, fieldError("method", err)
	}
	req.Header.SetMethodBytes(method)

	// Request URI: the path, stripped and escaped, then the query string.
	rawPath := ev.Path
	if k == kindV2 || k == kindURL {
		rawPath = ev.RawPath
	}
	path, err := jsonString(rawPath, &sc.str)
	if err != nil {
		return 0, netip.Addr{}, fieldError("path", err)
	}
	if h.opts.StripStage && (k == kindV1 || k == kindV2) {
		var stageBuf []byte
		stage, err := jsonString(rc.Stage, &stageBuf)
		if err != nil {
			return 0, netip.Addr{}, fieldError("requestContext.stage", err)
		}
		if len(stage) > 0 && string(stage) != "$default" && !stageOutside(rc.Path, stage, path) {
			path = stripStage(path, stage)
		}
	}
	path = stripPrefix(path, h.prefix)
	uri := appendPath(sc.uri[:0], path)
	if uri, err = inv.appendQuery(uri, k); err != nil {
		return 0, netip.Addr{}, err
	}
	sc.uri = uri
	req.SetRequestURIBytes(uri)

	// Headers, in the event's order. The multi-value form, when the event has
	// it, is the complete one; values are never split at commas.
	headers := ev.Headers
	if (k == kindV1 || k == kindALB) && !isNull(ev.MultiValueHeaders) {
		headers = ev.MultiValueHeaders
	}
	if err := eachValue(headers, &sc.key, &sc.val, func(k, v []byte) {
		if skipRequestHeader(k) {
			return
		}
		req.Header.AddBytesKV(k, v)
	}); err != nil {
		return 0, netip.Addr{}, fieldError("headers", err)
	}
	if k == kindV2 || k == kindURL {
		// Payload v2 moves the Cookie header into its own array.
		cookie := sc.val[:0]
		if err := eachString(ev.Cookies, &sc.key, func(v []byte) {
			if len(cookie) > 0 {
				cookie = append(cookie, "; "...)
			}
			cookie = append(cookie, v...)
		}); err != nil {
			return 0, netip.Addr{}, fieldError("cookies", err)
		}
		sc.val = cookie
		if len(cookie) > 0 {
			req.Header.AddBytesKV(strCookie, cookie)
		}
	}
	if len(req.Header.Host()) == 0 {
		host, err := jsonString(rc.DomainName, &sc.str)
		if err != nil {
			return 0, netip.Addr{}, fieldError("requestContext.domainName", err)
		}
		req.Header.SetHostBytes(host)
	}
	if len(req.Header.PeekBytes(strXRequestID)) == 0 {
		id, err := jsonString(rc.RequestID, &sc.str)
		if err != nil {
			return 0, netip.Addr{}, fieldError("requestContext.requestId", err)
		}
		if len(id) > 0 {
			req.Header.SetBytesKV(strXRequestID, id)
		}
	}

	// Body.
	body, err := jsonString(ev.Body, &sc.body)
	if err != nil {
		return 0, netip.Addr{}, fieldError("body", err)
	}
	if ev.IsBase64Encoded && len(body) > 0 {
		// body is in ev.Body or sc.body, never in sc.str.
		decoded, err := base64.StdEncoding.AppendDecode(sc.str[:0], body)
		if err != nil {
			return 0, netip.Addr{}, fieldError("body", err)
		}
		sc.str = decoded
		body = decoded
	}
	if len(body) > 0 {
		req.SetBody(body)
		req.Header.SetContentLength(len(body))
	}

	return k, inv.clientAddr(k), nil
}

// appendQuery appends "?query" to uri. Payload v2 carries the query string as
// the client sent it; REST APIs carry decoded parameters, which are encoded
// again; ALB carries them undecoded, which are joined as they are.
func (inv *invocation) appendQuery(uri []byte, k kind) ([]byte, error) {
	ev := &inv.ev
	sc := &inv.sc
	if k == kindV2 || k == kindURL {
		q, err := jsonString(ev.RawQueryString, &sc.str)
		if err != nil {
			return nil, fieldError("rawQueryString", err)
		}
		if len(q) > 0 {
			uri = append(append(uri, '?'), q...)
		}
		return uri, nil
	}
	params := ev.Query
	if !isNull(ev.MultiValueQuery) {
		params = ev.MultiValueQuery
	}
	first := true
	err := eachValue(params, &sc.key, &sc.val, func(key, v []byte) {
		if first {
			uri = append(uri, '?')
			first = false
		} else {
			uri = append(uri, '&')
		}
		if k == kindALB {
			uri = append(uri, key...)
			uri = append(uri, '=')
			uri = append(uri, v...)
			return
		}
		uri = fasthttp.AppendQuotedArg(uri, key)
		uri = append(uri, '=')
		uri = fasthttp.AppendQuotedArg(uri, v)
	})
	if err != nil {
		return nil, fieldError("queryStringParameters", err)
	}
	return uri, nil
}

// clientAddr returns the address of the client as the edge saw it: the
// source IP of the API Gateway or function URL request context, or, for ALB,
// which has no such field, the last X-Forwarded-For hop, the one the load
// balancer appended itself. An unparsable value gives the invalid address.
func (inv *invocation) clientAddr(k kind) netip.Addr {
	rc := &inv.ev.RequestContext
	raw := rc.Identity.SourceIP
	if k == kindV2 || k == kindURL {
		raw = rc.HTTP.SourceIP
	}
	if ip, err := jsonString(raw, &inv.sc.str); err == nil && len(ip) > 0 {
		return parseAddr(ip)
	}
	xff := inv.ctx.Request.Header.PeekBytes(strXForwardedFor)
	if i := bytes.LastIndexByte(xff, ','); i >= 0 {
		xff = xff[i+1:]
	}
	return parseAddr(bytes.TrimSpace(xff))
}

// parseAddr parses b without copying it into a string: netip keeps nothing
// of its input but inside the error, which is dropped here.
func parseAddr(b []byte) netip.Addr {
	if len(b) == 0 {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// stripPrefix removes prefix, which starts with a slash and does not end
// with one, from path when path is prefix itself or continues it with a
// slash: "/prod" strips "/prod/x" and "/prod", not "/products".
func stripPrefix(path, prefix []byte) []byte {
	if len(prefix) == 0 || !bytes.HasPrefix(path, prefix) {
		return path
	}
	return cutSegment(path, len(prefix))
}

// stripStage removes "/{stage}" from path the way stripPrefix removes a prefix.
func stripStage(path, stage []byte) []byte {
	if len(path) < 1+len(stage) || path[0] != '/' || !bytes.HasPrefix(path[1:], stage) {
		return path
	}
	return cutSegment(path, 1+len(stage))
}

// stageOutside reports whether a REST API's requestContext.path is
// "/{stage}" followed by path: then path is already without the stage, and a
// route that happens to begin with the stage's name must keep it.
func stageOutside(rawContextPath, stage, path []byte) bool {
	var buf []byte
	cp, err := jsonString(rawContextPath, &buf)
	if err != nil || len(cp) != 1+len(stage)+len(path) || cp[0] != '/' {
		return false
	}
	return bytes.HasPrefix(cp[1:], stage) && bytes.Equal(cp[1+len(stage):], path)
}

// cutSegment returns path without its first n bytes when they end at a
// segment boundary, "/" when nothing is left, and path otherwise.
func cutSegment(path []byte, n int) []byte {
	rest := path[n:]
	switch {
	case len(rest) == 0:
		return slash
	case rest[0] == '/':
		return rest
	}
	return path
}

var slash = []byte("/")

// pathKeep marks the bytes that may stand in an encoded path as they are:
// RFC 3986 unreserved characters, sub-delimiters, ':', '@' and '/'.
var pathKeep = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,;=:@/" {
		t[c] = true
	}
	return t
}()

// appendPath appends path as a valid encoded path. REST APIs, function URLs
// and ALB pass the path still percent-encoded, HTTP APIs pass it decoded; only
// the bytes that can never stand in an encoded path are escaped (space, '?',
// '#', controls, non-ASCII and a '%' not followed by two hex digits), so an
// encoded path passes unchanged and a decoded one cannot spill into the query.
func appendPath(dst, path []byte) []byte {
	if len(path) == 0 || path[0] != '/' {
		dst = append(dst, '/')
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case pathKeep[c]:
			dst = append(dst, c)
		case c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]):
			dst = append(dst, c)
		default:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xf])
		}
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// skipRequestHeader drops the headers that describe the transport rather than
// the request: the body arrives whole, so its length is set from the body.
func skipRequestHeader(k []byte) bool {
	return bytes.EqualFold(k, strContentLength) || bytes.EqualFold(k, strTransferEncoding)
}

var (
	strCookie           = []byte("Cookie")
	strXRequestID       = []byte("X-Request-Id")
	strXForwardedFor    = []byte("X-Forwarded-For")
	strContentLength    = []byte("Content-Length")
	strTransferEncoding = []byte("Transfer-Encoding")
)

// fieldError names the event field that could not be read.
func fieldError(field string, err error) error {
	return fmt.Errorf("lambda: event field %s: %w", field, err)
}
