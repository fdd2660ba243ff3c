package lambda_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/valyala/fasthttp"

	"github.com/api-perf/api-perf/server/lambda"
)

// invoke runs payload through a Handler serving h and fails on an error.
func invoke(t *testing.T, h fasthttp.RequestHandler, opts lambda.Options, payload []byte) []byte {
	t.Helper()
	out, err := lambda.NewHandler(h, opts).Invoke(context.Background(), payload)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if !json.Valid(out) {
		t.Fatalf("Invoke returned invalid JSON: %s", out)
	}
	return out
}

// decode unmarshals a response document with encoding/json, as the Lambda
// service would, into the aws-lambda-go response type v points to.
func decode(t *testing.T, out []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode response %s: %v", out, err)
	}
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// canonical is the header name as fasthttp presents it.
func canonical(k string) string {
	var h fasthttp.RequestHeader
	h.Set(k, "x")
	for key := range h.All() {
		if !strings.EqualFold(string(key), "Host") {
			return string(key)
		}
	}
	return k
}

// checkHeaders asserts that every header of the event reached the handler
// with all its values, in order and unsplit (the transport's Content-Length
// excepted: the adapter sets it from the body).
func checkHeaders(t *testing.T, got seen, single map[string]string, multi map[string][]string) {
	t.Helper()
	want := multi
	if len(want) == 0 {
		want = map[string][]string{}
		for k, v := range single {
			want[k] = []string{v}
		}
	}
	for k, vs := range want {
		switch strings.ToLower(k) {
		case "content-length":
			continue
		case "host":
			equal(t, "Host", got.Host, vs[0])
			continue
		}
		equal(t, "header "+k, got.Headers[canonical(k)], vs)
	}
}

// checkArgs asserts that the handler's query arguments are want's.
func checkArgs(t *testing.T, got seen, want map[string][]string) {
	t.Helper()
	if len(want) == 0 {
		want = map[string][]string{}
	}
	equal(t, "query args", got.Args, want)
}

func TestHandler_Invoke_Fixtures(t *testing.T) {
	t.Run("APIGatewayV1", func(t *testing.T) {
		for _, name := range []string{"apigw-request.json", "apigw-restapi-openapi-request.json"} {
			t.Run(name, func(t *testing.T) {
				payload := fixture(t, name)
				var ev events.APIGatewayProxyRequest
				if err := json.Unmarshal(payload, &ev); err != nil {
					t.Fatal(err)
				}
				var got seen
				out := invoke(t, recorder(&got), lambda.Options{StripStage: true}, payload)

				equal(t, "method", got.Method, "POST")
				equal(t, "path", got.Path, "/hello/world")
				equal(t, "query", got.Query, "name=me")
				checkArgs(t, got, ev.MultiValueQueryStringParameters)
				checkHeaders(t, got, ev.Headers, ev.MultiValueHeaders)
				equal(t, "X-Forwarded-For", got.Headers["X-Forwarded-For"], []string{"54.240.196.186, 54.182.214.83"})
				equal(t, "Host", got.Host, "gy415nuibc.execute-api.us-east-1.amazonaws.com")
				equal(t, "body", string(got.Body), "{\r\n\t\"a\": 1\r\n}")
				equal(t, "Content-Length", got.ContentLen, len(ev.Body))
				equal(t, "RemoteIP", got.RemoteIP, "192.168.196.186")
				equal(t, "RemoteAddr", got.RemoteAddr, "192.168.196.186:0")
				equal(t, "X-Request-Id", got.RequestID, ev.RequestContext.RequestID)

				var resp events.APIGatewayProxyResponse
				decode(t, out, &resp)
				equal(t, "status", resp.StatusCode, 200)
				equal(t, "Content-Type", resp.Headers["Content-Type"], "application/json")
				equal(t, "body", resp.Body, `{"ok":true}`)
				equal(t, "isBase64Encoded", resp.IsBase64Encoded, false)
			})
		}
	})

	t.Run("APIGatewayV2", func(t *testing.T) {
		for _, name := range []string{"apigw-v2-request-iam.json", "apigw-v2-request-jwt-authorizer.json", "apigw-v2-request-lambda-authorizer.json"} {
			t.Run(name, func(t *testing.T) {
				payload := fixture(t, name)
				var ev events.APIGatewayV2HTTPRequest
				if err := json.Unmarshal(payload, &ev); err != nil {
					t.Fatal(err)
				}
				var got seen
				out := invoke(t, recorder(&got), lambda.Options{}, payload)

				equal(t, "method", got.Method, "GET")
				equal(t, "path", got.Path, "/my/path")
				equal(t, "query", got.Query, ev.RawQueryString)
				want, _ := url.ParseQuery(ev.RawQueryString)
				checkArgs(t, got, want)
				equal(t, "parameter1", got.Args["parameter1"], []string{"value1", "value2"})
				checkHeaders(t, got, ev.Headers, nil)
				equal(t, "Cookie", got.Cookie, "cookie1; cookie2")
				// No Host header: the request context's domain stands in.
				equal(t, "Host", got.Host, "id.execute-api.us-east-1.amazonaws.com")
				equal(t, "body", string(got.Body), "{\r\n\t\"a\": 1\r\n}")
				// The fixture's sourceIp is the placeholder "IP".
				equal(t, "RemoteIP", got.RemoteIP, "0.0.0.0")
				equal(t, "X-Request-Id", got.RequestID, "id")

				var resp events.APIGatewayV2HTTPResponse
				decode(t, out, &resp)
				equal(t, "status", resp.StatusCode, 200)
				equal(t, "body", resp.Body, `{"ok":true}`)
			})
		}
		t.Run("apigw-v2-request-no-authorizer.json", func(t *testing.T) {
			payload := fixture(t, "apigw-v2-request-no-authorizer.json")
			var ev events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(payload, &ev); err != nil {
				t.Fatal(err)
			}
			var got seen
			invoke(t, recorder(&got), lambda.Options{}, payload)
			equal(t, "method", got.Method, "GET")
			equal(t, "path", got.Path, "/")
			equal(t, "query", got.Query, "")
			checkArgs(t, got, nil)
			checkHeaders(t, got, ev.Headers, nil)
			equal(t, "Cookie", got.Cookie, "")
			equal(t, "Host", got.Host, "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com")
			equal(t, "body", len(got.Body), 0)
			equal(t, "RemoteIP", got.RemoteIP, "1.2.3.4")
			equal(t, "RemoteAddr", got.RemoteAddr, "1.2.3.4:0")
			equal(t, "X-Request-Id", got.RequestID, "LV7fzho-PHcEJPw=")
		})
	})

	t.Run("FunctionURL", func(t *testing.T) {
		payload := fixture(t, "lambda-urls-request.json")
		var ev events.LambdaFunctionURLRequest
		if err := json.Unmarshal(payload, &ev); err != nil {
			t.Fatal(err)
		}
		var got seen
		out := invoke(t, recorder(&got), lambda.Options{}, payload)
		equal(t, "method", got.Method, "POST")
		equal(t, "path", got.Path, "/my/path")
		equal(t, "query", got.Query, ev.RawQueryString)
		want, _ := url.ParseQuery(ev.RawQueryString)
		checkArgs(t, got, want)
		checkHeaders(t, got, ev.Headers, nil)
		// A value with a comma is one value.
		equal(t, "Header2", got.Headers["Header2"], []string{"value1,value2"})
		equal(t, "Cookie", got.Cookie, "cookie1; cookie2")
		equal(t, "Host", got.Host, "<url-id>.lambda-url.us-west-2.on.aws")
		equal(t, "body", string(got.Body), "Hello from client!")
		equal(t, "RemoteIP", got.RemoteIP, "123.123.123.123")
		equal(t, "X-Request-Id", got.RequestID, "id")

		var resp events.LambdaFunctionURLResponse
		decode(t, out, &resp)
		equal(t, "status", resp.StatusCode, 200)
		equal(t, "body", resp.Body, `{"ok":true}`)
	})

	t.Run("ALB", func(t *testing.T) {
		for _, tc := range []struct {
			name, remote string
			multi        bool
		}{
			{"alb-lambda-target-request-headers-only.json", "25.12.198.67", false},
			{"alb-lambda-target-request-multivalue-headers.json", "72.21.198.67", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				payload := fixture(t, tc.name)
				var ev events.ALBTargetGroupRequest
				if err := json.Unmarshal(payload, &ev); err != nil {
					t.Fatal(err)
				}
				var got seen
				out := invoke(t, recorder(&got), lambda.Options{}, payload)
				equal(t, "method", got.Method, "GET")
				equal(t, "path", got.Path, "/")
				equal(t, "query", got.Query, "key=hello")
				checkHeaders(t, got, ev.Headers, ev.MultiValueHeaders)
				equal(t, "X-Myheader", got.Headers["X-Myheader"], []string{"123"})
				equal(t, "body", len(got.Body), 0)
				// ALB has no source IP field: the hop it appended to
				// X-Forwarded-For is the client.
				equal(t, "RemoteIP", got.RemoteIP, tc.remote)
				equal(t, "X-Request-Id", got.RequestID, "")

				var resp events.ALBTargetGroupResponse
				decode(t, out, &resp)
				equal(t, "status", resp.StatusCode, 200)
				equal(t, "statusDescription", resp.StatusDescription, "200 OK")
				equal(t, "body", resp.Body, `{"ok":true}`)
				if tc.multi {
					equal(t, "headers", resp.Headers, map[string]string(nil))
					equal(t, "Content-Type", resp.MultiValueHeaders["Content-Type"], []string{"application/json"})
				} else {
					equal(t, "multiValueHeaders", resp.MultiValueHeaders, map[string][]string(nil))
					equal(t, "Content-Type", resp.Headers["Content-Type"], "application/json")
				}
			})
		}
	})
}

// Hand-made events, each with the smallest set of fields of its kind.
const (
	v1Event = `{"resource":"/{proxy+}","path":%q,"httpMethod":"GET","headers":{"Host":"api.example.com"},
		"multiValueHeaders":{"Host":["api.example.com"]},"requestContext":{"stage":"prod","requestId":"r1",
		"identity":{"sourceIp":"203.0.113.9"}},"body":null,"isBase64Encoded":false}`
	v2Event = `{"version":"2.0","routeKey":"$default","rawPath":%q,"rawQueryString":"","headers":{},
		"requestContext":{"stage":"$default","requestId":"r2","domainName":"abc.execute-api.eu-west-1.amazonaws.com",
		"http":{"method":"GET","path":"/","sourceIp":"203.0.113.10"}},"isBase64Encoded":false}`
	urlEvent = `{"version":"2.0","rawPath":"/","rawQueryString":"","headers":{},
		"requestContext":{"requestId":"r3","domainName":"abc.lambda-url.eu-west-1.on.aws",
		"http":{"method":"GET","path":"/","sourceIp":"203.0.113.11"}},"isBase64Encoded":false}`
	albSingleEvent = `{"requestContext":{"elb":{"targetGroupArn":"arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/t/1"}},
		"httpMethod":"GET","path":"/","headers":{"x-forwarded-for":"198.51.100.1, 203.0.113.12"},"body":"","isBase64Encoded":false}`
	albMultiEvent = `{"requestContext":{"elb":{"targetGroupArn":"arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/t/1"}},
		"httpMethod":"GET","path":"/","multiValueHeaders":{"x-forwarded-for":["203.0.113.13"]},"body":"","isBase64Encoded":false}`
)

func TestHandler_Invoke_SetCookies(t *testing.T) {
	cookies := []string{"a=1; Path=/; HttpOnly", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT", "c=3"}
	h := func(ctx *fasthttp.RequestCtx) {
		for _, c := range cookies {
			ctx.Response.Header.Add("Set-Cookie", c)
		}
		ctx.Response.Header.Add("Vary", "Accept")
		ctx.Response.Header.Add("Vary", "Origin")
		ctx.Response.Header.Set("X-List", "a, b, c")
		ctx.SetStatusCode(fasthttp.StatusCreated)
	}

	t.Run("APIGatewayV1", func(t *testing.T) {
		var resp events.APIGatewayProxyResponse
		decode(t, invoke(t, h, lambda.Options{}, fmt.Appendf(nil, v1Event, "/")), &resp)
		equal(t, "status", resp.StatusCode, 201)
		equal(t, "Set-Cookie", resp.MultiValueHeaders["Set-Cookie"], cookies)
		equal(t, "Vary", resp.MultiValueHeaders["Vary"], []string{"Accept", "Origin"})
		equal(t, "X-List", resp.Headers["X-List"], "a, b, c")
		_, dup := resp.Headers["Set-Cookie"]
		equal(t, "Set-Cookie in headers", dup, false)
	})
	for _, tc := range []struct{ name, event string }{{"APIGatewayV2", fmt.Sprintf(v2Event, "/")}, {"FunctionURL", urlEvent}} {
		t.Run(tc.name, func(t *testing.T) {
			var resp events.APIGatewayV2HTTPResponse
			decode(t, invoke(t, h, lambda.Options{}, []byte(tc.event)), &resp)
			equal(t, "status", resp.StatusCode, 201)
			equal(t, "cookies", resp.Cookies, cookies)
			equal(t, "Vary", resp.Headers["Vary"], "Accept, Origin")
			equal(t, "X-List", resp.Headers["X-List"], "a, b, c")
			for k := range resp.Headers {
				if strings.EqualFold(k, "Set-Cookie") {
					t.Errorf("Set-Cookie in headers: %v", resp.Headers)
				}
			}
		})
	}
	t.Run("ALBMultiValue", func(t *testing.T) {
		var resp events.ALBTargetGroupResponse
		decode(t, invoke(t, h, lambda.Options{}, []byte(albMultiEvent)), &resp)
		equal(t, "status", resp.StatusCode, 201)
		equal(t, "statusDescription", resp.StatusDescription, "201 Created")
		equal(t, "Set-Cookie", resp.MultiValueHeaders["Set-Cookie"], cookies)
		equal(t, "Vary", resp.MultiValueHeaders["Vary"], []string{"Accept", "Origin"})
		equal(t, "X-List", resp.MultiValueHeaders["X-List"], []string{"a, b, c"})
	})
	t.Run("ALBSingleValue", func(t *testing.T) {
		var resp events.ALBTargetGroupResponse
		decode(t, invoke(t, h, lambda.Options{}, []byte(albSingleEvent)), &resp)
		// Each cookie under its own spelling of the name.
		var got []string
		names := map[string]bool{}
		for k, v := range resp.Headers {
			if strings.EqualFold(k, "Set-Cookie") {
				got = append(got, v)
				names[k] = true
			}
		}
		slices.Sort(got)
		equal(t, "Set-Cookie values", got, cookies)
		equal(t, "distinct names", len(names), len(cookies))
		equal(t, "canonical name", resp.Headers["Set-Cookie"], cookies[0])
		equal(t, "Vary", resp.Headers["Vary"], "Accept, Origin")
	})
}

func TestHandler_Invoke_Head(t *testing.T) {
	var resp events.APIGatewayV2HTTPResponse
	decode(t, invoke(t, smallJSON, lambda.Options{}, []byte(`{"version":"2.0","rawPath":"/products/1",
		"requestContext":{"http":{"method":"HEAD"}}}`)), &resp)
	equal(t, "status", resp.StatusCode, 200)
	equal(t, "Content-Type", resp.Headers["Content-Type"], "application/json")
	equal(t, "ETag", resp.Headers["Etag"], `"5d41402abc4b2a76"`)
	equal(t, "body", resp.Body, "")
}

func TestHandler_Invoke_BinaryResponse(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, tc := range []struct {
		name        string
		contentType string
		encoding    string
		body        []byte
		base64      bool
	}{
		{"OctetStream", "application/octet-stream", "", all, true},
		{"ImagePNG", "image/png", "", []byte("\x89PNG\r\n\x1a\n"), true},
		{"TextButNotUTF8", "text/plain", "", all, true},
		{"Gzip", "application/json", "gzip", []byte(`{"compressed":"pretend"}`), true},
		{"JSON", "application/json", "", []byte(`{"name":"Test Product","price":99.99}`), false},
		{"ProblemJSON", "application/problem+json; charset=utf-8", "", []byte(`{"status":404}`), false},
		{"SVG", "image/svg+xml", "", []byte(`<svg/>`), false},
		{"TextUTF8", "text/plain; charset=utf-8", "", []byte("héllo \u2028 \"q\" \\ \x01"), false},
	} {
		h := func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType(tc.contentType)
			if tc.encoding != "" {
				ctx.Response.Header.Set("Content-Encoding", tc.encoding)
			}
			ctx.SetBody(tc.body)
		}
		check := func(t *testing.T, body string, isBase64 bool) {
			t.Helper()
			equal(t, "isBase64Encoded", isBase64, tc.base64)
			got := []byte(body)
			if isBase64 {
				var err error
				if got, err = base64.StdEncoding.DecodeString(body); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, tc.body) {
				t.Errorf("body = %q, want %q", got, tc.body)
			}
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Run("APIGatewayV1", func(t *testing.T) {
				var resp events.APIGatewayProxyResponse
				decode(t, invoke(t, h, lambda.Options{}, fmt.Appendf(nil, v1Event, "/")), &resp)
				check(t, resp.Body, resp.IsBase64Encoded)
			})
			t.Run("APIGatewayV2", func(t *testing.T) {
				var resp events.APIGatewayV2HTTPResponse
				decode(t, invoke(t, h, lambda.Options{}, fmt.Appendf(nil, v2Event, "/")), &resp)
				check(t, resp.Body, resp.IsBase64Encoded)
			})
			t.Run("FunctionURL", func(t *testing.T) {
				var resp events.LambdaFunctionURLResponse
				decode(t, invoke(t, h, lambda.Options{}, []byte(urlEvent)), &resp)
				check(t, resp.Body, resp.IsBase64Encoded)
			})
			t.Run("ALB", func(t *testing.T) {
				var resp events.ALBTargetGroupResponse
				decode(t, invoke(t, h, lambda.Options{}, []byte(albSingleEvent)), &resp)
				check(t, resp.Body, resp.IsBase64Encoded)
			})
		})
	}
}

func TestHandler_Invoke_Base64RequestBody(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(255 - i)
	}
	enc := base64.StdEncoding.EncodeToString(all)
	// Some encoders escape the slash; the body is the same.
	escaped := strings.ReplaceAll(enc, "/", `\/`)
	for _, tc := range []struct{ name, event string }{
		{"APIGatewayV1", `{"httpMethod":"POST","path":"/upload","requestContext":{"stage":"prod"},"body":"` + enc + `","isBase64Encoded":true}`},
		{"APIGatewayV2", `{"version":"2.0","rawPath":"/upload","requestContext":{"http":{"method":"POST"}},"body":"` + escaped + `","isBase64Encoded":true}`},
		{"FunctionURL", `{"version":"2.0","rawPath":"/upload","requestContext":{"domainName":"x.lambda-url.us-east-1.on.aws","http":{"method":"POST"}},"body":"` + enc + `","isBase64Encoded":true}`},
		{"ALB", `{"requestContext":{"elb":{}},"httpMethod":"POST","path":"/upload","body":"` + escaped + `","isBase64Encoded":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got seen
			invoke(t, recorder(&got), lambda.Options{}, []byte(tc.event))
			equal(t, "method", got.Method, "POST")
			equal(t, "path", got.Path, "/upload")
			if !bytes.Equal(got.Body, all) {
				t.Errorf("body = %x, want %x", got.Body, all)
			}
			equal(t, "Content-Length", got.ContentLen, len(all))
		})
	}
	t.Run("Invalid", func(t *testing.T) {
		h := lambda.NewHandler(recorder(new(seen)), lambda.Options{})
		_, err := h.Invoke(context.Background(), []byte(`{"version":"2.0","rawPath":"/","requestContext":{"http":{"method":"POST"}},"body":"not base64!","isBase64Encoded":true}`))
		if err == nil || !strings.Contains(err.Error(), "body") {
			t.Errorf("err = %v, want an error naming the body", err)
		}
	})
}

func TestHandler_Invoke_RequestHeaders(t *testing.T) {
	t.Run("CommaValuesAreNotSplit", func(t *testing.T) {
		for _, tc := range []struct{ name, event string }{
			{"APIGatewayV1", `{"httpMethod":"GET","path":"/","requestContext":{"stage":"p"},"headers":{"Accept":"a/b, c/d"},"multiValueHeaders":{"Accept":["a/b, c/d"],"X-Multi":["1, 2","3"]}}`},
			{"APIGatewayV2", `{"version":"2.0","rawPath":"/","requestContext":{"http":{"method":"GET"}},"headers":{"accept":"a/b, c/d","x-multi":"1, 2,3"}}`},
			{"ALB", `{"requestContext":{"elb":{}},"httpMethod":"GET","path":"/","multiValueHeaders":{"accept":["a/b, c/d"],"x-multi":["1, 2","3"]}}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var got seen
				invoke(t, recorder(&got), lambda.Options{}, []byte(tc.event))
				equal(t, "Accept", got.Headers["Accept"], []string{"a/b, c/d"})
				if tc.name == "APIGatewayV2" {
					equal(t, "X-Multi", got.Headers["X-Multi"], []string{"1, 2,3"})
				} else {
					equal(t, "X-Multi", got.Headers["X-Multi"], []string{"1, 2", "3"})
				}
			})
		}
	})
	t.Run("JSONEscapes", func(t *testing.T) {
		event := `{"version":"2.0","rawPath":"/","requestContext":{"http":{"method":"GET"}},
			"headers":{"x-e\u0073c":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \t lone:\ud800"}}`
		var want struct{ Headers map[string]string }
		if err := json.Unmarshal([]byte(event), &want); err != nil {
			t.Fatal(err)
		}
		var got seen
		invoke(t, recorder(&got), lambda.Options{}, []byte(event))
		equal(t, "X-Esc", got.Headers["X-Esc"], []string{want.Headers["x-esc"]})
	})
	t.Run("RequestIDKept", func(t *testing.T) {
		var got seen
		invoke(t, recorder(&got), lambda.Options{}, []byte(`{"version":"2.0","rawPath":"/","headers":{"x-request-id":"client-id"},
			"requestContext":{"requestId":"aws-id","http":{"method":"GET"}}}`))
		equal(t, "X-Request-Id", got.RequestID, "client-id")
	})
	t.Run("ALBClientIsLastForwardedHop", func(t *testing.T) {
		var got seen
		invoke(t, recorder(&got), lambda.Options{}, []byte(albSingleEvent))
		equal(t, "RemoteIP", got.RemoteIP, "203.0.113.12")
	})
	t.Run("ContentLengthFromBody", func(t *testing.T) {
		var got seen
		invoke(t, recorder(&got), lambda.Options{}, []byte(`{"version":"2.0","rawPath":"/","body":"abc",
			"headers":{"content-length":"999","transfer-encoding":"chunked"},"requestContext":{"http":{"method":"POST"}}}`))
		equal(t, "Content-Length", got.ContentLen, 3)
		equal(t, "body", string(got.Body), "abc")
		equal(t, "Transfer-Encoding", got.Headers["Transfer-Encoding"], []string(nil))
	})
	t.Run("IPv6", func(t *testing.T) {
		var got seen
		invoke(t, recorder(&got), lambda.Options{}, []byte(`{"version":"2.0","rawPath":"/","headers":{},
			"requestContext":{"http":{"method":"GET","sourceIp":"2001:db8::1"}}}`))
		equal(t, "RemoteIP", got.RemoteIP, "2001:db8::1")
		equal(t, "RemoteAddr", got.RemoteAddr, "[2001:db8::1]:0")
	})
}

func TestHandler_Invoke_PathAndQuery(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     lambda.Options
		event    string
		path     string // decoded path the router matches
		original string // path as it stands in the request URI
		args     map[string][]string
	}{
		{"V1StripPrefix", lambda.Options{StripPrefix: "/prod/"}, fmt.Sprintf(v1Event, "/prod/products/7"), "/products/7", "/products/7", nil},
		{"V1StripPrefixWhole", lambda.Options{StripPrefix: "prod"}, fmt.Sprintf(v1Event, "/prod"), "/", "/", nil},
		{"V1StripPrefixNotASegment", lambda.Options{StripPrefix: "/prod"}, fmt.Sprintf(v1Event, "/products"), "/products", "/products", nil},
		{"V1StripStage", lambda.Options{StripStage: true}, fmt.Sprintf(v1Event, "/prod/orders"), "/orders", "/orders", nil},
		{"V1StageOutsidePath", lambda.Options{StripStage: true},
			`{"httpMethod":"GET","path":"/api/v1/products","requestContext":{"stage":"api","path":"/api/api/v1/products"}}`,
			"/api/v1/products", "/api/v1/products", nil},
		{"V1StageInsidePath", lambda.Options{StripStage: true},
			`{"httpMethod":"GET","path":"/api/v1/products","requestContext":{"stage":"api","path":"/api/v1/products"}}`,
			"/v1/products", "/v1/products", nil},
		{"V1StageKeptWhenOff", lambda.Options{}, fmt.Sprintf(v1Event, "/prod/orders"), "/prod/orders", "/prod/orders", nil},
		{"V1StageAndPrefix", lambda.Options{StripStage: true, StripPrefix: "/api"}, fmt.Sprintf(v1Event, "/prod/api/orders"), "/orders", "/orders", nil},
		{"V1EncodedPathUnchanged", lambda.Options{}, fmt.Sprintf(v1Event, "/files/a%2Fb%20c"), "/files/a/b c", "/files/a%2Fb%20c", nil},
		{"V2DefaultStageKept", lambda.Options{StripStage: true}, fmt.Sprintf(v2Event, "/prod/products"), "/prod/products", "/prod/products", nil},
		{"V2DecodedPathEscaped", lambda.Options{}, fmt.Sprintf(v2Event, "/a b/50%/c?d#e"), "/a b/50%/c?d#e", "/a%20b/50%25/c%3Fd%23e", nil},
		{"V1MultiValueQuery", lambda.Options{},
			`{"httpMethod":"GET","path":"/q","requestContext":{"stage":"p"},"queryStringParameters":{"a":"2","b c":"x&y=z"},
			"multiValueQueryStringParameters":{"a":["1","2"],"b c":["x&y=z"],"e":["é"]}}`,
			"/q", "/q", map[string][]string{"a": {"1", "2"}, "b c": {"x&y=z"}, "e": {"é"}}},
		{"V1SingleValueQuery", lambda.Options{},
			`{"httpMethod":"GET","path":"/q","requestContext":{"stage":"p"},"queryStringParameters":{"limit":"5","cursor":"a+b"}}`,
			"/q", "/q", map[string][]string{"limit": {"5"}, "cursor": {"a+b"}}},
		{"ALBQueryUndecoded", lambda.Options{},
			`{"requestContext":{"elb":{}},"httpMethod":"GET","path":"/q","multiValueQueryStringParameters":{"a":["1","x%20y"],"b":["%26"]}}`,
			"/q", "/q", map[string][]string{"a": {"1", "x y"}, "b": {"&"}}},
		{"V2RawQuery", lambda.Options{},
			`{"version":"2.0","rawPath":"/q","rawQueryString":"a=1&a=2&s=x%20y&t=a,b","requestContext":{"http":{"method":"GET"}}}`,
			"/q", "/q", map[string][]string{"a": {"1", "2"}, "s": {"x y"}, "t": {"a,b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got seen
			invoke(t, recorder(&got), tc.opts, []byte(tc.event))
			equal(t, "path", got.Path, tc.path)
			equal(t, "original path", got.PathOriginal, tc.original)
			checkArgs(t, got, tc.args)
		})
	}
}

// The named stage of an HTTP API only goes when StripStage asks for it.
func TestHandler_Invoke_V2NamedStage(t *testing.T) {
	event := `{"version":"2.0","rawPath":"/beta/products","requestContext":{"stage":"beta","http":{"method":"GET"}}}`
	var got seen
	invoke(t, recorder(&got), lambda.Options{StripStage: true}, []byte(event))
	equal(t, "path", got.Path, "/products")
	invoke(t, recorder(&got), lambda.Options{}, []byte(event))
	equal(t, "path", got.Path, "/beta/products")
}

func TestHandler_Invoke_UnsupportedEvent(t *testing.T) {
	h := lambda.NewHandler(func(ctx *fasthttp.RequestCtx) { t.Error("handler called") }, lambda.Options{})
	for _, tc := range []struct {
		name        string
		payload     string
		unsupported bool
	}{
		{"SQS", `{"Records":[{"messageId":"1","body":"hi","eventSource":"aws:sqs"}]}`, true},
		{"Scheduled", `{"version":"0","detail-type":"Scheduled Event","source":"aws.events"}`, true},
		{"EmptyObject", `{}`, true},
		{"Null", `null`, true},
		{"WebSocketWithoutMethod", `{"requestContext":{"stage":"prod","routeKey":"$connect","eventType":"CONNECT"}}`, true},
		{"NotJSON", `GET / HTTP/1.1`, false},
		{"Array", `[1,2]`, false},
		{"Empty", ``, false},
		{"HeadersNotAnObject", `{"version":"2.0","rawPath":"/","headers":7,"requestContext":{"http":{"method":"GET"}}}`, false},
		{"HeaderValueNumber", `{"httpMethod":"GET","path":"/","requestContext":{"stage":"p"},"headers":{"a":1}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := h.Invoke(context.Background(), []byte(tc.payload))
			if err == nil {
				t.Fatalf("Invoke = %s, nil; want an error", out)
			}
			if got := errors.Is(err, lambda.ErrUnsupportedEvent); got != tc.unsupported {
				t.Errorf("errors.Is(%v, ErrUnsupportedEvent) = %v, want %v", err, got, tc.unsupported)
			}
			if !strings.HasPrefix(err.Error(), "lambda: ") {
				t.Errorf("error %q does not say where it comes from", err)
			}
		})
	}
}

// TestHandler_Invoke_Panic: the adapter has no recovery of its own (the
// server's handler answers its panics, server.TestLambda_Panic). A panic
// that reaches it goes on to the runtime, and the pooled invocation it
// interrupted serves the next event cleanly.
func TestHandler_Invoke_Panic(t *testing.T) {
	h := lambda.NewHandler(func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/boom" {
			ctx.Response.Header.Add("Set-Cookie", "half=written")
			ctx.SetBodyString("partial")
			panic("boom")
		}
		ctx.SetBodyString("fine")
	}, lambda.Options{})

	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the handler's panic", p)
			}
		}()
		h.Invoke(context.Background(), fmt.Appendf(nil, v2Event, "/boom")) //nolint:errcheck // it panics
	}()

	out, err := h.Invoke(context.Background(), fmt.Appendf(nil, v2Event, "/ok"))
	if err != nil {
		t.Fatal(err)
	}
	var resp events.APIGatewayV2HTTPResponse
	decode(t, out, &resp)
	equal(t, "status after panic", resp.StatusCode, 200)
	equal(t, "body after panic", resp.Body, "fine")
	equal(t, "cookies after panic", len(resp.Cookies), 0)
}

func TestInvocationContext(t *testing.T) {
	deadline := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var got time.Time
	var ok bool
	h := lambda.NewHandler(func(c *fasthttp.RequestCtx) {
		got, ok = lambda.InvocationContext(c).Deadline()
	}, lambda.Options{})
	if _, err := h.Invoke(ctx, fmt.Appendf(nil, v2Event, "/")); err != nil {
		t.Fatal(err)
	}
	if !ok || !got.Equal(deadline) {
		t.Errorf("deadline = %v, %v; want %v", got, ok, deadline)
	}
	var plain fasthttp.RequestCtx
	if lambda.InvocationContext(&plain) != context.Background() {
		t.Error("InvocationContext outside Lambda is not context.Background()")
	}
}

// Concurrent invocations share the pool; each must see only its own request
// and get only its own response.
func TestHandler_Invoke_Concurrent(t *testing.T) {
	h := lambda.NewHandler(func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Add("Set-Cookie", "p="+string(ctx.Path()))
		ctx.SetContentType("text/plain")
		ctx.SetBody(append([]byte("path="), ctx.Path()...))
	}, lambda.Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				path := fmt.Sprintf("/g%d/i%d", g, i)
				out, err := h.Invoke(context.Background(), fmt.Appendf(nil, v2Event, path))
				if err != nil {
					t.Error(err)
					return
				}
				var resp events.APIGatewayV2HTTPResponse
				if err := json.Unmarshal(out, &resp); err != nil {
					t.Error(err)
					return
				}
				if resp.Body != "path="+path || len(resp.Cookies) != 1 || resp.Cookies[0] != "p="+path {
					t.Errorf("request %s got body %q cookies %q", path, resp.Body, resp.Cookies)
					return
				}
			}
		})
	}
	wg.Wait()
}
