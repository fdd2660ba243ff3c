package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/storage"
)

// documentedMetrics are the series README's metrics section promises;
// each must appear after a scripted mix of requests.
var documentedMetrics = []string{
	"apiperf_http_requests_total",
	"apiperf_http_request_duration_seconds_bucket",
	"apiperf_http_requests_in_flight",
	"apiperf_build_info",
	"apiperf_cache_requests_total",
	"apiperf_cache_loads_total",
	"apiperf_ratelimit_decisions_total",
	"go_sql_open_connections",
	"go_sql_wait_count_total",
	"go_goroutines",
	"process_cpu_seconds_total",
}

// TestMetrics_Scrape scripts a mix of requests against the real program
// on MariaDB + Redis with a separate METRICS_ADDR, then checks the scrape:
// every documented metric is there, route labels are templates (a scan of
// random URLs adds no series), and promtool accepts the exposition.
func TestMetrics_Scrape(t *testing.T) {
	vars := map[string]string{
		"MYSQL_DSN":        testenv.MySQLDSN(t),
		"REDIS_URL":        "redis://" + testenv.RedisAddr(),
		"REDIS_KEY_PREFIX": testenv.UniqueName("metrics-") + ":",
		"METRICS_ADDR":     "127.0.0.1:0",
		"RATE_LIMIT_READ":  "1000/1s,burst=1000",
	}
	metricsAddr := make(chan string, 1)
	base, _ := startRunWith(t, vars, func(_, m string) { metricsAddr <- m })
	maddr := "http://" + <-metricsAddr

	call(t, "POST", base+"/products", `{"name":"m","price":1}`)
	for i := 0; i < 5; i++ {
		call(t, "GET", base+"/products/1", "")
		call(t, "GET", base+"/products/999", "")
	}
	call(t, "POST", base+"/orders", `{"product_id":1,"quantity":1}`)
	for i := 0; i < 200; i++ {
		call(t, "GET", fmt.Sprintf("%s/scan/%d/x%d", base, i, i*7), "")
	}
	if status, _ := call(t, "GET", base+"/metrics", ""); status != 404 {
		t.Fatalf("/metrics on the API port with METRICS_ADDR set: %d", status)
	}
	status, body := call(t, "GET", maddr+"/metrics", "")
	if status != 200 {
		t.Fatalf("scrape: %d", status)
	}
	for _, m := range documentedMetrics {
		if !regexp.MustCompile(`(?m)^` + m + `[{ ]`).MatchString(body) {
			t.Errorf("metric %s missing from the scrape", m)
		}
	}
	routes := map[string]bool{}
	for _, m := range regexp.MustCompile(`apiperf_http_requests_total\{[^}]*route="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		routes[m[1]] = true
	}
	for r := range routes {
		if strings.Contains(r, "scan") || strings.Contains(r, "999") {
			t.Errorf("raw path %q became a label value", r)
		}
	}
	if !routes["unmatched"] || !routes["/products/{id}"] {
		t.Errorf("route labels %v lack the template or the unmatched bucket", routes)
	}
	if !strings.Contains(body, `apiperf_cache_requests_total{result="negative_hit"}`) {
		t.Error("unknown ids were not served from the negative cache")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is required in CI (Debian package prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus); the scrape was checked, its lint was not")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestMetrics_BuildInfo: /metrics says which build answers, with the
// link-time version and revision and the Go version.
func TestMetrics_BuildInfo(t *testing.T) {
	v, r, b := version, revision, buildTime
	t.Cleanup(func() { version, revision, buildTime = v, r, b }) // after the server stops
	version, revision, buildTime = "v9.8.7", "feedface", "2026-01-02T03:04:05Z"
	base, _ := startRun(t, map[string]string{"DATA_DIR": t.TempDir()})
	status, body := call(t, "GET", base+"/metrics", "")
	want := fmt.Sprintf(`apiperf_build_info{goversion=%q,revision="feedface",version="v9.8.7"} 1`, runtime.Version())
	if status != 200 || !strings.Contains(body, want+"\n") {
		t.Fatalf("scrape (%d) lacks %s", status, want)
	}
}

// TestRegisterRuntimeMetrics_Conflict: a collector of another shape under
// a runtime metric's name is an error naming the runtime metrics, which
// serve returns (start-up fails), not a panic.
func TestRegisterRuntimeMetrics_Conflict(t *testing.T) {
	db, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := registerRuntimeMetrics(prometheus.NewRegistry(), db); err != nil {
		t.Fatalf("an empty registry: %v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "go_goroutines", Help: "another"}))
	err = registerRuntimeMetrics(reg, db)
	if err == nil || !strings.Contains(err.Error(), "runtime metrics") || !strings.Contains(err.Error(), "go_goroutines") {
		t.Fatalf("a conflicting go_goroutines: %v, want an error naming the runtime metrics and go_goroutines", err)
	}
}
