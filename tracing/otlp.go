package tracing

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// otlpClient sends spans to an OTLP/HTTP endpoint as binary protobuf: the
// transport of otlptrace's exporter (which batches and converts the spans).
//
// It stands in for otlptracehttp, whose configuration code imports grpc-go:
// that import links grpc, golang.org/x/net/trace and html/template into the
// binary (twice its size, since reflection over templates keeps every
// method). The wire format is the specification's: a POST of an
// ExportTraceServiceRequest with Content-Type application/x-protobuf.
type otlpClient struct {
	url     string
	headers map[string]string
	http    *http.Client
}

func newOTLPClient(url string, headers map[string]string, timeout time.Duration) *otlpClient {
	return &otlpClient{url: url, headers: headers, http: &http.Client{Timeout: timeout}}
}

// Start implements otlptrace.Client; the first upload connects.
func (c *otlpClient) Start(context.Context) error { return nil }

// Stop implements otlptrace.Client.
func (c *otlpClient) Stop(context.Context) error {
	c.http.CloseIdleConnections()
	return nil
}

// UploadTraces implements otlptrace.Client: one POST per batch. A refused
// batch is dropped with an error the SDK logs; spans are not worth a retry
// queue that could grow while a collector is down.
func (c *otlpClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	body, err := exportRequest(spans)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "api-perf OTLP exporter")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("tracing: export: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // drained for connection reuse
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("tracing: export: the collector answered %s", resp.Status)
	}
	return nil
}

// exportRequest encodes an ExportTraceServiceRequest, whose only field is
// resource_spans (1, repeated): each one marshalled as the message it is,
// framed as a length-delimited field. The collector's request type is not
// used because its package also declares the gRPC service.
func exportRequest(spans []*tracepb.ResourceSpans) ([]byte, error) {
	var b []byte
	for _, rs := range spans {
		m, err := proto.Marshal(rs)
		if err != nil {
			return nil, fmt.Errorf("tracing: encode spans: %w", err)
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b, nil
}
