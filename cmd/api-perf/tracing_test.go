package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/api-perf/api-perf/internal/testenv"
)

// Caller's trace context, as a client or a proxy would send it.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// startTraced runs the program with vars and returns its base URL, a stop
// (SIGTERM, which also flushes the spans) and the log it writes.
func startTraced(t *testing.T, vars map[string]string) (base string, stop func() error, logs *testenv.Buffer) {
	t.Helper()
	logs = &testenv.Buffer{}
	base, stop = startRunLogs(t, vars, nil, logs)
	return base, stop, logs
}

// callTraced sends a request with a traceparent header (none when empty).
func callTraced(t *testing.T, method, url, body, traceparent string) (int, string) {
	t.Helper()
	if traceparent == "" {
		return call(t, method, url, body)
	}
	return call(t, method, url, body, "traceparent", traceparent, "tracestate", "vendor=opaque")
}

// TestTracing_OTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, a request that
// carries a sampled traceparent becomes a server span in the caller's
// trace, under the caller's span; its database call (MariaDB) and its Redis
// calls are client spans under the request's span; the spans reach an
// OTLP/HTTP collector as protobuf; and the access log names the trace and
// the span. A request whose traceparent says "not sampled" records nothing
// (the default sampler follows the caller).
func TestTracing_OTLP(t *testing.T) {
	collector := testenv.NewCollector(t)
	base, stop, logs := startTraced(t, map[string]string{
		"MYSQL_DSN":                   testenv.MySQLDSN(t),
		"REDIS_URL":                   "redis://" + testenv.RedisAddr(),
		"REDIS_KEY_PREFIX":            testenv.UniqueName("apiperf_trace_") + ":",
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL(),
		"OTEL_SERVICE_NAME":           "api-perf-test",
		"ACCESS_LOG":                  "all",
	})
	status, body := callTraced(t, "POST", base+"/api/v1/products", `{"name":"Traced","price":1.5}`, "")
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	var p struct{ ID int64 }
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	// The first read misses the cache: Redis (lease, store) and MariaDB.
	path := fmt.Sprintf("%s/api/v1/products/%d", base, p.ID)
	if status, body := callTraced(t, "GET", path, "", "00-"+callerTrace+"-"+callerSpan+"-01"); status != http.StatusOK {
		t.Fatalf("traced read: %d %s", status, body)
	}
	const unsampled = "11111111111111111111111111111111"
	if status, _ := callTraced(t, "GET", path, "", "00-"+unsampled+"-"+callerSpan+"-00"); status != http.StatusOK {
		t.Fatalf("unsampled read: %d", status)
	}
	if err := stop(); err != nil { // exports what is queued
		t.Fatal(err)
	}

	var server, db, redis []testenv.Span
	for _, s := range collector.Spans() {
		if s.TraceID == unsampled {
			t.Errorf("span %q recorded for a caller that did not sample", s.Name)
		}
		if s.TraceID != callerTrace {
			continue
		}
		if s.Service != "api-perf-test" {
			t.Errorf("span %q of service %q", s.Name, s.Service)
		}
		switch {
		case s.Kind == "server":
			server = append(server, s)
		case s.Attrs["db.system.name"] == "mysql":
			db = append(db, s)
		case s.Attrs["db.system.name"] == "redis":
			redis = append(redis, s)
		}
	}
	if len(server) != 1 {
		t.Fatalf("server spans in the caller's trace: %+v; all spans: %+v", server, collector.Spans())
	}
	req := server[0]
	if req.ParentSpanID != callerSpan || req.Name != "GET /api/v1/products/{id}" ||
		req.Attrs["http.route"] != "/api/v1/products/{id}" || req.Attrs["http.response.status_code"] != "200" ||
		req.Attrs["http.request.method"] != "GET" {
		t.Errorf("request span %+v", req)
	}
	if len(db) != 1 || db[0].ParentSpanID != req.SpanID || db[0].Kind != "client" || db[0].Name != "SELECT products" ||
		db[0].Attrs["db.operation.name"] != "SELECT" || db[0].Attrs["db.collection.name"] != "products" ||
		db[0].Attrs["db.system"] != "mysql" || db[0].Attrs["db.namespace"] == "" {
		t.Errorf("store spans under the request %s: %+v", req.SpanID, db)
	}
	if len(redis) == 0 {
		t.Error("no Redis span in the caller's trace")
	}
	for _, s := range redis {
		if s.ParentSpanID != req.SpanID || s.Kind != "client" || s.Attrs["db.operation.name"] == "" {
			t.Errorf("Redis span not a client child of the request %s: %+v", req.SpanID, s)
		}
	}
	log := logs.String()
	if !strings.Contains(log, `"trace_id":"`+callerTrace+`","span_id":"`+req.SpanID+`"`) {
		t.Errorf("no access log line with the request's trace and span ids:\n%s", log)
	}
	if strings.Contains(log, `"trace_id":"`+unsampled) {
		t.Error("the access log names a trace that was not recorded")
	}
}

// TestTracing_Off: with no OTLP endpoint in the configuration nothing is
// exported, even with the SDK's own variable in the process environment
// (the configuration is the one source) and a sampled traceparent, and the
// access log carries no trace ids.
func TestTracing_Off(t *testing.T) {
	collector := testenv.NewCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL())
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.URL()+"/v1/traces")
	base, stop, logs := startTraced(t, map[string]string{"DATA_DIR": t.TempDir(), "ACCESS_LOG": "all"})
	status, body := callTraced(t, "POST", base+"/products", `{"name":"Untraced","price":1}`, "00-"+callerTrace+"-"+callerSpan+"-01")
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	if status, _ := callTraced(t, "GET", base+"/products/1", "", "00-"+callerTrace+"-"+callerSpan+"-01"); status != http.StatusOK {
		t.Fatalf("read: %d", status)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := collector.Requests(); n != 0 {
		t.Errorf("%d exports with tracing off", n)
	}
	if log := logs.String(); strings.Contains(log, "trace_id") || !strings.Contains(log, `"tracing":false`) {
		t.Errorf("log with tracing off:\n%s", log)
	}
}

func TestLoadConfig_Tracing(t *testing.T) {
	c, err := loadConfig(env(nil))
	if err != nil || c.Tracing.Endpoint != "" {
		t.Fatalf("tracing on by default: %q %v", c.Tracing.Endpoint, err)
	}
	for _, tc := range []struct {
		vars     map[string]string
		endpoint string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/otlp/"}, "https://collector:4318/otlp/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9999/traces"}, "http://b:9999/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, ""},
		// A protocol that only matters with an endpoint is not checked without one.
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ""},
	} {
		c, err := loadConfig(env(tc.vars))
		if err != nil || c.Tracing.Endpoint != tc.endpoint {
			t.Errorf("%v: endpoint %q, %v; want %q", tc.vars, c.Tracing.Endpoint, err, tc.endpoint)
		}
	}
	c, err = loadConfig(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
		"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01",
		"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20ecret, x-team = core"}))
	if err != nil || !strings.Contains(c.Tracing.Sampler.Description(), "TraceIDRatioBased{0.01}") ||
		c.Tracing.Headers["api-key"] != "s ecret" || c.Tracing.Headers["x-team"] != "core" || c.Tracing.ServiceName != "api-perf" {
		t.Fatalf("sampler %v, headers %v, service %q: %v", c.Tracing.Sampler, c.Tracing.Headers, c.Tracing.ServiceName, err)
	}

	for name, vars := range map[string]map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"},
		"OTEL_EXPORTER_OTLP_PROTOCOL":        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		"OTEL_EXPORTER_OTLP_HEADERS":         {"OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
		"OTEL_TRACES_SAMPLER":                {"OTEL_TRACES_SAMPLER": "sometimes"},
		"OTEL_TRACES_SAMPLER_ARG":            {"OTEL_TRACES_SAMPLER_ARG": "1.5"},
		"OTEL_SDK_DISABLED":                  {"OTEL_SDK_DISABLED": "maybe"},
	} {
		_, err := loadConfig(env(vars))
		if err == nil || !strings.Contains(err.Error(), name+": ") {
			t.Errorf("%v: error %v does not name %s", vars, err, name)
		}
	}
}
