package lambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/server/lambda"
)

// benchEvents are AWS's sample events, one per kind.
var benchEvents = []struct{ name, fixture string }{
	{"apigw-v1", "apigw-request.json"},
	{"apigw-v2", "apigw-v2-request-no-authorizer.json"},
	{"function-url", "lambda-urls-request.json"},
	{"alb", "alb-lambda-target-request-multivalue-headers.json"},
}

// smallJSON stands in for the router: it answers like a product read.
func smallJSON(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("ETag", `"5d41402abc4b2a76"`)
	ctx.SetBodyString(`{"id":1,"name":"Test Product","price":99.99,"stock":100}`)
}

// compactFixture returns the fixture as the Lambda service sends events:
// compact JSON, without the samples' indentation.
func compactFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, fixture(tb, name)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkHandler_Invoke(b *testing.B) {
	for _, ev := range benchEvents {
		b.Run(ev.name, func(b *testing.B) {
			payload := compactFixture(b, ev.fixture)
			h := lambda.NewHandler(smallJSON, lambda.Options{StripStage: true})
			ctx := context.Background()
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.Invoke(ctx, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandler_InvokeIndented is the REST API sample as shipped, with
// its indentation: what whitespace costs the decoder.
func BenchmarkHandler_InvokeIndented(b *testing.B) {
	payload := fixture(b, "apigw-request.json")
	h := lambda.NewHandler(smallJSON, lambda.Options{StripStage: true})
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Invoke(context.Background(), payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandler_InvokeParallel measures the pool under concurrent
// invocations, as Lambda managed instances run them.
func BenchmarkHandler_InvokeParallel(b *testing.B) {
	payload := compactFixture(b, "apigw-v2-request-no-authorizer.json")
	h := lambda.NewHandler(smallJSON, lambda.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Invoke(context.Background(), payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBaseline_StdJSON is the floor of the usual adapter design before
// it even builds a request: decode the event into the aws-lambda-go struct
// with encoding/json and encode a response struct back.
func BenchmarkBaseline_StdJSON(b *testing.B) {
	for _, ev := range benchEvents {
		b.Run(ev.name, func(b *testing.B) {
			payload := compactFixture(b, ev.fixture)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				switch ev.name {
				case "apigw-v1":
					var req events.APIGatewayProxyRequest
					err = json.Unmarshal(payload, &req)
					_, _ = json.Marshal(events.APIGatewayProxyResponse{StatusCode: 200,
						Headers: map[string]string{"Content-Type": "application/json", "Etag": `"5d41402abc4b2a76"`},
						Body:    `{"id":1,"name":"Test Product","price":99.99,"stock":100}`})
				case "apigw-v2":
					var req events.APIGatewayV2HTTPRequest
					err = json.Unmarshal(payload, &req)
					_, _ = json.Marshal(events.APIGatewayV2HTTPResponse{StatusCode: 200,
						Headers: map[string]string{"Content-Type": "application/json", "Etag": `"5d41402abc4b2a76"`},
						Body:    `{"id":1,"name":"Test Product","price":99.99,"stock":100}`})
				case "function-url":
					var req events.LambdaFunctionURLRequest
					err = json.Unmarshal(payload, &req)
					_, _ = json.Marshal(events.LambdaFunctionURLResponse{StatusCode: 200,
						Headers: map[string]string{"Content-Type": "application/json", "Etag": `"5d41402abc4b2a76"`},
						Body:    `{"id":1,"name":"Test Product","price":99.99,"stock":100}`})
				case "alb":
					var req events.ALBTargetGroupRequest
					err = json.Unmarshal(payload, &req)
					_, _ = json.Marshal(events.ALBTargetGroupResponse{StatusCode: 200, StatusDescription: "200 OK",
						MultiValueHeaders: map[string][]string{"Content-Type": {"application/json"}, "Etag": {`"5d41402abc4b2a76"`}},
						Body:              `{"id":1,"name":"Test Product","price":99.99,"stock":100}`})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
