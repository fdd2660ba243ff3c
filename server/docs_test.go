package server_test

import (
	"bytes"
	"mime"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/api-perf/api-perf/server"
)

// TestDocs_Pages fetches the document and the two documentation pages
// over HTTP, as a browser would, and checks that the pages load the
// document this server serves.
func TestDocs_Pages(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := startServer(t, openStore(t, "sqlite", ""), server.Config{
		Registerer: reg,
		Metrics:    fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
	})
	get := func(t *testing.T, path, wantType string) []byte {
		t.Helper()
		r := ts.do(t, "GET", path, "").want(t, 200)
		ct := r.Header.Get("Content-Type")
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != wantType {
			t.Errorf("GET %s: Content-Type %q, want %s", path, ct, wantType)
		}
		if strings.HasPrefix(mt, "text/") && !strings.EqualFold(params["charset"], "utf-8") {
			t.Errorf("GET %s: Content-Type %q names no UTF-8 charset", path, ct)
		}
		if r.Header.Get("X-Request-ID") == "" {
			t.Errorf("GET %s: no X-Request-ID", path)
		}
		return r.Body
	}

	t.Run("OpenAPI", func(t *testing.T) {
		body := get(t, "/openapi.json", "application/json")
		file, err := os.ReadFile("openapi.json")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, file) {
			t.Error("the served document is not openapi.json")
		}
	})

	// The pages name their document relative to themselves (so they work
	// behind a path prefix); resolved, it is the path the router serves.
	specURL := regexp.MustCompile(`(?:url:\s*|spec-url=)"([^"]+)"`)
	page := func(t *testing.T, path string, must ...string) {
		t.Helper()
		body := string(get(t, path, "text/html"))
		if !strings.HasPrefix(strings.ToLower(body), "<!doctype html>") || !strings.HasSuffix(strings.TrimSpace(body), "</html>") {
			t.Errorf("%s is not a complete HTML document:\n%s", path, body)
		}
		m := specURL.FindAllStringSubmatch(body, -1)
		if len(m) != 1 || resolve(t, path, m[0][1]) != "/openapi.json" {
			t.Errorf("%s does not load /openapi.json (found %v)", path, m)
		}
		for _, s := range must {
			if !strings.Contains(body, s) {
				t.Errorf("%s lacks %q", path, s)
			}
		}
		// Every script and stylesheet comes over HTTPS, so the page works
		// when the API is served over TLS.
		for _, u := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(body, -1) {
			if !strings.HasPrefix(u[1], "https://") {
				t.Errorf("%s loads %s over something other than HTTPS", path, u[1])
			}
		}
		// Every external asset is pinned to an exact version and carries
		// a SHA-384 integrity digest with CORS, without which a browser
		// does not check it.
		tags := regexp.MustCompile(`<(?:script|link)\b[^>]*\b(?:src|href)="https://[^"]*"[^>]*>`).FindAllString(body, -1)
		if len(tags) == 0 {
			t.Errorf("%s loads no external asset", path)
		}
		pinned := regexp.MustCompile(`(?:src|href)="https://cdn\.jsdelivr\.net/npm/[a-z-]+@\d+\.\d+\.\d+/[^"]+"`)
		integrity := regexp.MustCompile(`\bintegrity="sha384-[A-Za-z0-9+/]{64}"`)
		for _, tag := range tags {
			if !pinned.MatchString(tag) || !integrity.MatchString(tag) || !strings.Contains(tag, `crossorigin="anonymous"`) {
				t.Errorf("%s: %s is not pinned with integrity and crossorigin", path, tag)
			}
		}
		ts.do(t, "POST", path, "").want(t, 405)
	}
	t.Run("SwaggerUI", func(t *testing.T) {
		page(t, "/docs", `id="swagger-ui"`, "swagger-ui-bundle.js", "swagger-ui.css", `dom_id: "#swagger-ui"`)
	})
	t.Run("ReDoc", func(t *testing.T) {
		page(t, "/redoc", "<redoc ", "redoc.standalone.js")
	})

	t.Run("Metrics", func(t *testing.T) {
		ts.do(t, "GET", "/healthz", "").want(t, 200)
		body := get(t, "/metrics", "text/plain")
		if !bytes.Contains(body, []byte(`apiperf_http_requests_total{method="GET",route="/healthz",status="200"} 1`)) {
			t.Errorf("/metrics does not count the /healthz request:\n%s", body)
		}
	})
}

func resolve(t *testing.T, page, ref string) string {
	t.Helper()
	base, err := url.Parse("http://api.example" + page)
	if err != nil {
		t.Fatal(err)
	}
	r, err := url.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	return base.ResolveReference(r).Path
}
