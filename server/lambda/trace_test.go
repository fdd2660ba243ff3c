package lambda

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestTraceparentFromXRay(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
			"00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
			"00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00"},
		{"Sampled=1; Parent=53995c3f42cd8ad8; Root=1-5759e988-bd862e3fe1be46a994272793",
			"00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"},
		{"Root=1-5759e988-bd862e3fe1be46a994272793", // ALB: no parent, no decision
			"00-5759e988bd862e3fe1be46a994272793-e1be46a994272793-00"},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?;Lineage=a:1",
			"00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00"},
		{"", ""},
		{"Root=2-5759e988-bd862e3fe1be46a994272793", ""},
		{"Root=1-5759e988-bd862e3fe1be46a99427279", ""},
		{"Root=1-5759E988-bd862e3fe1be46a994272793", ""},
		{"Root=1-5759e988bd862e3fe1be46a9942727931", ""},
		{"Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8", ""},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000", ""},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad", ""},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8adg", ""},
	} {
		got, ok := traceparentFromXRay(nil, []byte(tc.in))
		if string(got) != tc.want || ok != (tc.want != "") {
			t.Errorf("traceparentFromXRay(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

func TestJoinTrace(t *testing.T) {
	const xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	const fromXRay = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
	const w3c = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	//lint:ignore SA1029 the key is aws-lambda-go's
	invocation := context.WithValue(context.Background(), invocationTraceKey,
		"Root=1-11111111-222222222222222222222222;Parent=3333333333333333;Sampled=1")
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		headers map[string]string
		want    string
	}{
		{"XRayHeader", context.Background(), map[string]string{"X-Amzn-Trace-Id": xray}, fromXRay},
		{"TraceparentWins", context.Background(), map[string]string{"X-Amzn-Trace-Id": xray, "traceparent": w3c}, w3c},
		{"Invocation", invocation, nil, "00-11111111222222222222222222222222-3333333333333333-01"},
		{"EventBeforeInvocation", invocation, map[string]string{"X-Amzn-Trace-Id": xray}, fromXRay},
		{"Malformed", context.Background(), map[string]string{"X-Amzn-Trace-Id": "Root=oops"}, ""},
		{"Nothing", context.Background(), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			joinTrace(tc.ctx, &h)
			if got := string(h.Peek("traceparent")); got != tc.want {
				t.Errorf("traceparent = %q, want %q", got, tc.want)
			}
		})
	}
}
