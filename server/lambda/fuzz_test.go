package lambda_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/server/lambda"
)

// Whatever the payload, Invoke returns an error or a valid JSON document; it
// never panics.
func FuzzHandler_Invoke(f *testing.F) {
	for _, name := range []string{
		"apigw-request.json", "apigw-v2-request-iam.json", "apigw-v2-request-no-authorizer.json",
		"lambda-urls-request.json", "alb-lambda-target-request-headers-only.json",
		"alb-lambda-target-request-multivalue-headers.json",
	} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"version":"2.0","rawPath":"/a b","rawQueryString":"x=1","cookies":["a=1"],"headers":{"h":"v"},
		"requestContext":{"http":{"method":"PUT","sourceIp":"::1"}},"body":"AAEC","isBase64Encoded":true}`))
	f.Add([]byte(`{"httpMethod":"GET","path":"/\u00e9","requestContext":{"stage":"s"},"multiValueQueryStringParameters":{"a":[null,"b"]}}`))
	h := lambda.NewHandler(func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Add("Set-Cookie", "a=1")
		ctx.Response.Header.Add("Set-Cookie", "b=2")
		ctx.Response.Header.SetBytesV("X-Echo", ctx.Path())
		ctx.SetBody(ctx.PostBody())
	}, lambda.Options{StripStage: true, StripPrefix: "/p"})
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, err := h.Invoke(context.Background(), payload)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid response %s", out)
		}
	})
}
