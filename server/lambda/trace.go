package lambda

import (
	"bytes"
	"context"

	"github.com/valyala/fasthttp"
)

var (
	strTraceparent  = []byte("traceparent")
	strXAmznTraceID = []byte("X-Amzn-Trace-Id")
)

// invocationTraceKey is the context key under which aws-lambda-go hands a
// handler the invocation's X-Ray trace header (Lambda-Runtime-Trace-Id).
const invocationTraceKey = "x-amzn-trace-id"

// joinTrace gives the request a W3C traceparent when the event has none but
// carries an AWS X-Ray trace header, from the event's X-Amzn-Trace-Id or,
// failing that, the invocation's: the server then continues that trace
// like any other. A traceparent the event carries is left alone.
func joinTrace(ctx context.Context, h *fasthttp.RequestHeader) {
	if len(h.PeekBytes(strTraceparent)) > 0 {
		return
	}
	xray := h.PeekBytes(strXAmznTraceID)
	if len(xray) == 0 {
		s, _ := ctx.Value(invocationTraceKey).(string)
		xray = []byte(s)
	}
	var buf [55]byte
	if tp, ok := traceparentFromXRay(buf[:0], xray); ok {
		h.SetBytesKV(strTraceparent, tp)
	}
}

// traceparentFromXRay converts an X-Ray trace header such as
//
//	Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
//
// into the traceparent 00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01,
// appended to dst. The trace id is the root's 8 and 24 hex digits; the
// flags say sampled only for Sampled=1 (no decision, or "?", is not
// sampled under the parentbased_ samplers). Without a Parent, the parent
// id is the root's last 16 digits: W3C needs one, and it is stable. A
// malformed header gives ok false.
func traceparentFromXRay(dst, xray []byte) (_ []byte, ok bool) {
	var root, parent []byte
	sampled := false
	for len(xray) > 0 {
		var part []byte
		if i := bytes.IndexByte(xray, ';'); i >= 0 {
			part, xray = xray[:i], xray[i+1:]
		} else {
			part, xray = xray, nil
		}
		part = bytes.TrimSpace(part)
		k, v, _ := bytes.Cut(part, []byte("="))
		switch string(k) {
		case "Root":
			root = v
		case "Parent":
			parent = v
		case "Sampled":
			sampled = string(v) == "1"
		}
	}
	// 1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx
	if len(root) != 35 || root[0] != '1' || root[1] != '-' || root[10] != '-' ||
		!lowerHex(root[2:10]) || !lowerHex(root[11:]) {
		return dst, false
	}
	if parent == nil {
		parent = root[19:]
	}
	if len(parent) != 16 || !lowerHex(parent) || allZero(parent) || (allZero(root[2:10]) && allZero(root[11:])) {
		return dst, false
	}
	dst = append(dst, "00-"...)
	dst = append(dst, root[2:10]...)
	dst = append(dst, root[11:]...)
	dst = append(dst, '-')
	dst = append(dst, parent...)
	if sampled {
		return append(dst, "-01"...), true
	}
	return append(dst, "-00"...), true
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}
