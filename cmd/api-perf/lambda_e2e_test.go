package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/aws/aws-lambda-go/events"
)

// TestLambda_EndToEnd builds the real binary, runs it under the AWS Lambda
// Runtime Interface Emulator in the embedded default (SQLite, in-process
// cache and limiter) and drives the API through each event kind the
// emulator would receive from API Gateway REST (v1), HTTP API (v2), a
// function URL and an ALB target group (both header modes).
//
// The emulator is installed with
//
//	go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d (or make tools)
//
// Without it the test skips, except in CI (CI=true), where it fails.
func TestLambda_EndToEnd(t *testing.T) {
	rie := lookupRIE(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bootstrap")
	build := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	emu := startEmulator(t, rie, bin, filepath.Join(dir, "data"))

	kinds := []struct {
		name   string
		prefix string // the routes answer under /api/v1 and at the root
	}{
		{"apigw-v1", "/api/v1"},
		{"apigw-v2", ""},
		{"function-url", ""},
		{"alb", "/api/v1"},
		{"alb-multi-value", ""},
	}
	for i, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			call := func(t *testing.T, method, path, body string) result {
				t.Helper()
				return emu.invoke(t, k.name, method, k.prefix+path, body, fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i))
			}

			// Create: 201, Location, the price exactly as sent.
			r := call(t, "POST", "/products", `{"name":"Test Product","price":99.99}`)
			r.want(t, http.StatusCreated, "application/json")
			var p struct {
				ID    int64       `json:"id"`
				Name  string      `json:"name"`
				Price json.Number `json:"price"`
			}
			r.decode(t, &p)
			if p.ID <= 0 || p.Name != "Test Product" || p.Price != "99.99" || !bytes.Contains(r.body, []byte(`"price":99.99`)) {
				t.Fatalf("created product %s", r.body)
			}
			if loc := r.header.Get("Location"); !strings.HasSuffix(loc, "/products/"+strconv.FormatInt(p.ID, 10)) {
				t.Errorf("Location %q for product %d", loc, p.ID)
			}
			// The request id of the event reaches the handler and comes back.
			if got, want := r.header.Get("X-Request-Id"), fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i); got != want {
				t.Errorf("X-Request-Id %q, want the event's %q", got, want)
			}
			id := strconv.FormatInt(p.ID, 10)

			// Read it back.
			r = call(t, "GET", "/products/"+id, "")
			r.want(t, http.StatusOK, "application/json")
			if !bytes.Contains(r.body, []byte(`"price":99.99`)) || !bytes.Contains(r.body, []byte(`"name":"Test Product"`)) {
				t.Errorf("product %s", r.body)
			}
			if r.header.Get("ETag") == "" {
				t.Error("GET product without ETag")
			}

			// List, with a query string.
			r = call(t, "GET", "/products?limit=100", "")
			r.want(t, http.StatusOK, "application/json")
			var list struct {
				Items []struct {
					ID int64 `json:"id"`
				} `json:"items"`
			}
			r.decode(t, &list)
			found := false
			for _, it := range list.Items {
				found = found || it.ID == p.ID
			}
			if !found {
				t.Errorf("product %d not in the list %s", p.ID, r.body)
			}

			// Order two.
			r = call(t, "POST", "/orders", fmt.Sprintf(`{"product_id":%d,"quantity":2}`, p.ID))
			r.want(t, http.StatusCreated, "application/json")
			if !bytes.Contains(r.body, []byte(`"quantity":2`)) || !bytes.Contains(r.body, []byte(`"total":199.98`)) {
				t.Errorf("order %s", r.body)
			}
			if r.header.Get("Location") == "" {
				t.Error("order without Location")
			}

			// Unknown product: problem+json 404.
			r = call(t, "GET", "/products/999999999", "")
			r.want(t, http.StatusNotFound, "application/problem+json")
			if !bytes.Contains(r.body, []byte(`"status":404`)) {
				t.Errorf("404 body %s", r.body)
			}

			// Invalid body: 422 with the fields.
			r = call(t, "POST", "/products", `{"name":"","price":-1}`)
			r.want(t, http.StatusUnprocessableEntity, "application/problem+json")
			if !bytes.Contains(r.body, []byte(`"errors"`)) {
				t.Errorf("422 body %s", r.body)
			}
		})
	}

	logCold(t, emu.logs.String())
	if t.Failed() {
		t.Logf("emulator log:\n%s", emu.logs.String())
	}
}

// logCold reports the cold start as the emulator measured it. Its REPORT
// line's "Init Duration" is near zero, because the emulator starts the
// process inside the first invocation (whose Duration then includes it); the
// init phase proper, from exec to the runtime's first /next, is rapid's
// "INIT REPORT(durationMs: ...)". The function logs its own init_ms too.
func logCold(t *testing.T, logs string) {
	t.Helper()
	find := func(expr string) string {
		if m := regexp.MustCompile(expr).FindStringSubmatch(logs); m != nil {
			return m[1]
		}
		return "?"
	}
	report := find(`Init Duration: ([0-9.]+) ms`)
	initPhase := find(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
	firstInvoke := find(`Init Duration: [0-9.]+ ms\s+Duration: ([0-9.]+) ms`)
	appInit := find(`init_ms=([0-9]+)`)
	t.Logf("cold start: emulator INIT REPORT %s ms (exec to first /next); app init_ms %s; "+
		"first invocation %s ms including init; REPORT Init Duration %s ms", initPhase, appInit, firstInvoke, report)
	if report == "?" && initPhase == "?" {
		t.Errorf("the emulator reported no init duration; its log:\n%s", logs)
	}
}

// lookupRIE finds aws-lambda-rie on PATH, in GOBIN or in GOPATH/bin.
func lookupRIE(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("AWS_LAMBDA_RIE"); p != "" {
		return p
	}
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p
	}
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			continue
		}
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if d == "" {
				continue
			}
			if v == "GOPATH" {
				d = filepath.Join(d, "bin")
			}
			if p := filepath.Join(d, "aws-lambda-rie"); isExecutable(p) {
				return p
			}
		}
	}
	const msg = "aws-lambda-rie not found; install it with: " +
		"go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d (or make tools)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// emulator is a running aws-lambda-rie serving the function binary.
type emulator struct {
	url    string
	logs   *testenv.Buffer
	client *http.Client
}

// startEmulator runs rie with bin as the function on free loopback ports and
// waits until it accepts invocations. The function's environment is the
// embedded default: no MYSQL_DSN or REDIS_URL, DATA_DIR in the test's
// directory.
func startEmulator(t *testing.T, rie, bin, dataDir string) *emulator {
	t.Helper()
	addr, apiAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rie,
		"--runtime-interface-emulator-address", addr,
		"--runtime-api-address", apiAddr,
		bin)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"TMPDIR=" + os.TempDir(),
		"DATA_DIR=" + dataDir,
		"LOG_LEVEL=info",
		"LOG_FORMAT=text",
		"AWS_LAMBDA_FUNCTION_TIMEOUT=60",
	}
	logs := new(testenv.Buffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", rie, err)
	}
	t.Cleanup(func() { stopEmulator(t, cmd, bin) })

	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the emulator does not listen on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &emulator{
		url:    "http://" + addr + "/2015-03-31/functions/function/invocations",
		logs:   logs,
		client: &http.Client{Timeout: 60 * time.Second},
	}
}

// stopEmulator ends the emulator and the function process it started. The
// emulator puts the function in its own process group, so the function is
// found by its executable, which is this test's own build.
func stopEmulator(t *testing.T, cmd *exec.Cmd, bin string) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	for _, pid := range pidsOf(bin) {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// pidsOf returns the processes whose executable is path.
func pidsOf(path string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			pids = append(pids, pid)
		}
	}
	return pids
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// result is an HTTP response rebuilt from the function's Lambda response.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) want(t *testing.T, status int, contentType string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, contentType) {
		t.Errorf("Content-Type %q, want %s", ct, contentType)
	}
}

func (r result) decode(t *testing.T, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// invoke sends one request as an event of the given kind and rebuilds the
// HTTP response from the Lambda response.
func (e *emulator) invoke(t *testing.T, kind, method, target, body, requestID string) result {
	t.Helper()
	path, query, _ := strings.Cut(target, "?")
	values, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{"accept": "application/json", "user-agent": "api-perf-e2e"}
	if body != "" {
		headers["content-type"] = "application/json"
	}
	const sourceIP = "203.0.113.7"
	var event any
	switch kind {
	case "apigw-v1":
		ev := events.APIGatewayProxyRequest{
			Resource: "/{proxy+}", Path: path, HTTPMethod: method, Body: body,
			Headers: map[string]string{}, MultiValueHeaders: map[string][]string{},
			QueryStringParameters: map[string]string{}, MultiValueQueryStringParameters: values,
			RequestContext: events.APIGatewayProxyRequestContext{
				Stage: "prod", RequestID: requestID, Path: "/prod" + path, HTTPMethod: method,
				DomainName: "e2e.execute-api.us-east-1.amazonaws.com",
				Identity:   events.APIGatewayRequestIdentity{SourceIP: sourceIP},
			},
		}
		for k, v := range headers {
			ev.Headers[k] = v
			ev.MultiValueHeaders[k] = []string{v}
		}
		for k, v := range values {
			ev.QueryStringParameters[k] = v[len(v)-1]
		}
		event = ev
	case "apigw-v2":
		event = events.APIGatewayV2HTTPRequest{
			Version: "2.0", RouteKey: "$default", RawPath: path, RawQueryString: query, Headers: headers, Body: body,
			RequestContext: events.APIGatewayV2HTTPRequestContext{
				Stage: "$default", RequestID: requestID, DomainName: "e2e.execute-api.us-east-1.amazonaws.com",
				HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
					Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: sourceIP, UserAgent: "api-perf-e2e"},
			},
		}
	case "function-url":
		event = events.LambdaFunctionURLRequest{
			Version: "2.0", RawPath: path, RawQueryString: query, Headers: headers, Body: body,
			RequestContext: events.LambdaFunctionURLRequestContext{
				RequestID: requestID, DomainName: "e2e.lambda-url.us-east-1.on.aws",
				HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
					Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: sourceIP, UserAgent: "api-perf-e2e"},
			},
		}
	case "alb", "alb-multi-value":
		ev := events.ALBTargetGroupRequest{
			HTTPMethod: method, Path: path, Body: body,
			RequestContext: events.ALBTargetGroupRequestContext{ELB: events.ELBContext{
				TargetGroupArn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-perf/e2e"}},
		}
		headers["x-forwarded-for"] = sourceIP
		headers["x-request-id"] = requestID // ALB events carry no request id of their own
		// ALB passes the query undecoded: the raw pairs of the target.
		raw := map[string][]string{}
		for _, kv := range strings.Split(query, "&") {
			if kv != "" {
				k, v, _ := strings.Cut(kv, "=")
				raw[k] = append(raw[k], v)
			}
		}
		if kind == "alb" {
			ev.Headers, ev.QueryStringParameters = headers, map[string]string{}
			for k, v := range raw {
				ev.QueryStringParameters[k] = v[len(v)-1]
			}
		} else {
			ev.MultiValueHeaders, ev.MultiValueQueryStringParameters = map[string][]string{}, raw
			for k, v := range headers {
				ev.MultiValueHeaders[k] = []string{v}
			}
		}
		event = ev
	default:
		t.Fatalf("unknown kind %s", kind)
	}
	payload, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Post(e.url, "application/json", bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, e.logs.String())
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("emulator answered %d: %s", resp.StatusCode, raw.Bytes())
	}
	return toResult(t, kind, raw.Bytes())
}

// toResult rebuilds the HTTP response the way the AWS front end would from
// the function's response document of the given kind.
func toResult(t *testing.T, kind string, doc []byte) result {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	r := result{header: http.Header{}}
	var body string
	var isBase64 bool
	switch kind {
	case "apigw-v1":
		var resp events.APIGatewayProxyResponse
		if err := dec.Decode(&resp); err != nil {
			t.Fatalf("not an API Gateway v1 response: %s: %v", doc, err)
		}
		r.status, body, isBase64 = resp.StatusCode, resp.Body, resp.IsBase64Encoded
		for k, v := range resp.Headers {
			r.header.Add(k, v)
		}
		for k, vs := range resp.MultiValueHeaders {
			for _, v := range vs {
				r.header.Add(k, v)
			}
		}
	case "apigw-v2", "function-url":
		var resp events.APIGatewayV2HTTPResponse
		if err := dec.Decode(&resp); err != nil {
			t.Fatalf("not an HTTP API v2 response: %s: %v", doc, err)
		}
		r.status, body, isBase64 = resp.StatusCode, resp.Body, resp.IsBase64Encoded
		for k, v := range resp.Headers {
			r.header.Add(k, v)
		}
		for _, c := range resp.Cookies {
			r.header.Add("Set-Cookie", c)
		}
	case "alb", "alb-multi-value":
		var resp events.ALBTargetGroupResponse
		if err := dec.Decode(&resp); err != nil {
			t.Fatalf("not an ALB response: %s: %v", doc, err)
		}
		r.status, body, isBase64 = resp.StatusCode, resp.Body, resp.IsBase64Encoded
		if want := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)); resp.StatusDescription != want {
			t.Errorf("statusDescription %q, want %q", resp.StatusDescription, want)
		}
		if kind == "alb" && resp.MultiValueHeaders != nil || kind == "alb-multi-value" && resp.Headers != nil {
			t.Errorf("%s answered in the other header mode: %s", kind, doc)
		}
		for k, v := range resp.Headers {
			r.header.Add(k, v)
		}
		for k, vs := range resp.MultiValueHeaders {
			for _, v := range vs {
				r.header.Add(k, v)
			}
		}
	}
	if r.status == 0 {
		t.Fatalf("no statusCode in the function's answer: %s", doc)
	}
	r.body = []byte(body)
	if isBase64 {
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			t.Fatal(err)
		}
		r.body = b
	}
	return r
}
