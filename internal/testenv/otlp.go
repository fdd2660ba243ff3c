package testenv

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Collector is an OTLP/HTTP trace collector for tests: it decodes every
// ExportTraceServiceRequest POSTed to /v1/traces (protobuf, gzip or not)
// and keeps the spans.
type Collector struct {
	srv *httptest.Server

	mu       sync.Mutex
	spans    []Span
	requests int
	bad      []string
}

// Span is one received span, ids in lowercase hex as on the wire of
// traceparent, attributes as strings.
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Name                          string
	// Kind is "server", "client", "internal", ...
	Kind    string
	Service string
	Attrs   map[string]string
	// Error reports the span's status is an error.
	Error bool
}

// NewCollector starts a collector that stops when the test ends, and
// fails the test then if it received anything it could not decode.
func NewCollector(tb testing.TB) *Collector {
	tb.Helper()
	c := &Collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	tb.Cleanup(func() {
		c.srv.Close()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, b := range c.bad {
			tb.Errorf("collector: %s", b)
		}
	})
	return c
}

// URL is the collector's base URL (OTEL_EXPORTER_OTLP_ENDPOINT).
func (c *Collector) URL() string { return c.srv.URL }

// Spans returns the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Requests is the number of export requests received, well-formed or not.
func (c *Collector) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.requests++
	c.mu.Unlock()
	fail := func(format string, args ...any) {
		c.mu.Lock()
		c.bad = append(c.bad, fmt.Sprintf(format, args...))
		c.mu.Unlock()
		http.Error(w, "bad request", http.StatusBadRequest)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		fail("%s %s: want POST /v1/traces", r.Method, r.URL.Path)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		fail("Content-Type %q: want application/x-protobuf", ct)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			fail("gzip: %v", err)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		fail("read: %v", err)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		fail("decode ExportTraceServiceRequest: %v", err)
		return
	}
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Name:         s.GetName(),
					Kind:         kindName(s.GetKind().String()),
					Service:      service,
					Attrs:        map[string]string{},
					Error:        s.GetStatus().GetCode().String() == "STATUS_CODE_ERROR",
				}
				for _, kv := range s.GetAttributes() {
					sp.Attrs[kv.GetKey()] = valueString(kv.GetValue())
				}
				got = append(got, sp)
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, got...)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// kindName turns SPAN_KIND_SERVER into server.
func kindName(k string) string {
	const prefix = "SPAN_KIND_"
	if len(k) > len(prefix) {
		k = k[len(prefix):]
	}
	b := []byte(k)
	for i, ch := range b {
		if ch >= 'A' && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
	return string(b)
}

func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	}
	return v.String()
}
