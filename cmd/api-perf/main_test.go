package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/storage"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig_Defaults(t *testing.T) {
	c, err := loadConfig(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.DataDir != "./data" || !c.RedisClientCache || c.CacheTTL != time.Minute ||
		c.ReadPolicy.Name != "read" || c.ReadPolicy.Burst != 200 || c.WritePolicy.Burst != 40 || c.FailClosed || c.ShutdownTimeout != 15*time.Second {
		t.Fatalf("defaults %+v", c)
	}
}

// TestStart_StorageSettingsNamed: a value storage rejects is reported by
// the variable the user set, not by storage's Config field, at start-up
// and by migrate alike.
func TestStart_StorageSettingsNamed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{nil, map[string]string{"DATA_DIR": filepath.Join(file, "data")}, "DATA_DIR: cannot create it: "},
		{[]string{"migrate", "status"}, map[string]string{"DATA_DIR": filepath.Join(file, "data")}, "DATA_DIR: cannot create it: "},
		{nil, map[string]string{"MYSQL_DSN": "u@tcp(p:3306/db"}, "MYSQL_DSN: "},
	} {
		c.vars["LOG_LEVEL"] = "error"
		err := run(context.Background(), c.args, env(c.vars), io.Discard, io.Discard, nil)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "Config.") {
			t.Errorf("%v with %v: %v, want an error starting %q", c.args, c.vars, err, c.want)
		}
	}
}

// TestLoadConfig_Lambda: on Lambda the data directory moves to /tmp, and
// client-side caching and rate-limit debt are off, unless the settings
// say otherwise.
func TestLoadConfig_Lambda(t *testing.T) {
	c, err := loadConfig(env(map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}))
	if err != nil || c.DataDir != "/tmp/data" || c.RedisClientCache || c.RateLimitDebt != 0 {
		t.Fatalf("Lambda defaults: data dir %q, client cache %v, debt %d, %v", c.DataDir, c.RedisClientCache, c.RateLimitDebt, err)
	}
	c, err = loadConfig(env(map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "REDIS_CLIENT_CACHE": "on", "DATA_DIR": "/mnt/efs", "RATE_LIMIT_DEBT": "8"}))
	if err != nil || c.DataDir != "/mnt/efs" || !c.RedisClientCache || c.RateLimitDebt != 8 {
		t.Fatalf("explicit settings on Lambda: data dir %q, client cache %v, debt %d, %v", c.DataDir, c.RedisClientCache, c.RateLimitDebt, err)
	}
	if c, err := loadConfig(env(nil)); err != nil || c.RateLimitDebt != 8 {
		t.Fatalf("off Lambda: debt %d, %v; want the default 8", c.RateLimitDebt, err)
	}
}

func TestLoadConfig_Invalid(t *testing.T) {
	for name, value := range map[string]string{
		"CACHE_TTL":          "soon",
		"DB_QUERY_TIMEOUT":   "-1s",
		"DB_MAX_OPEN_CONNS":  "many",
		"REDIS_CLIENT_CACHE": "maybe",
		"RATE_LIMIT_READ":    "fast",
		"RATE_LIMIT_WRITE":   "10/0s",
		"RATE_LIMIT_FAILURE": "sideways",
		"TRUSTED_PROXIES":    "10.0.0.0/33",
		"API_KEYS":           "short",
		"LOG_LEVEL":          "loud",
		"LOG_FORMAT":         "xml",
		"REDIS_URL":          "localhost:6379",
		"MYSQL_DSN":          "nonsense",
		"SHUTDOWN_TIMEOUT":   "0s",
		"HTTP_READ_TIMEOUT":  "fast",
		"MYSQL_READ_DSN":     "replica.internal:3306",
		"MYSQL_READ_MAX_LAG": "0s",
		"MYSQL_READ_TIMEOUT": "soon",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(env(map[string]string{name: value}))
			if err == nil || !strings.Contains(err.Error(), name+":") {
				t.Fatalf("%s=%q: error %v does not name the variable", name, value, err)
			}
		})
	}
	_, err := loadConfig(env(map[string]string{"CACHE_TTL": "x", "LOG_LEVEL": "y"}))
	if err == nil || !strings.Contains(err.Error(), "CACHE_TTL") || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Fatalf("every bad variable is reported at once: %v", err)
	}
	// Replicas need the primary, and a bad DSN's password stays out of the message.
	_, err = loadConfig(env(map[string]string{"MYSQL_READ_DSN": "api:pw@tcp(r:3306)/apiperf"}))
	if err == nil || !strings.Contains(err.Error(), "MYSQL_READ_DSN: read replicas need MYSQL_DSN") {
		t.Fatalf("MYSQL_READ_DSN without MYSQL_DSN: %v", err)
	}
	_, err = loadConfig(env(map[string]string{"MYSQL_DSN": "u@tcp(p:3306)/db", "MYSQL_READ_DSN": "u@tcp(r:3306)/db,api:s3cret@replica"}))
	if err == nil || !strings.Contains(err.Error(), "MYSQL_READ_DSN: ") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a malformed second replica DSN: %v", err)
	}
	c, err := loadConfig(env(map[string]string{"MYSQL_DSN": "u@tcp(p:3306)/db", "MYSQL_READ_DSN": " u@tcp(r1:3306)/db , u@tcp(r2:3306)/db "}))
	if err != nil || len(c.ReplicaDSNs) != 2 || c.ReplicaDSNs[1] != "u@tcp(r2:3306)/db" || c.ReplicaMaxLag != time.Second || c.ReplicaTimeout != 500*time.Millisecond {
		t.Fatalf("two replicas and the defaults: %+v %v", c, err)
	}
	c, err = loadConfig(env(map[string]string{"RATE_LIMIT_READ": "off", "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1", "HTTP_WRITE_TIMEOUT": "0"}))
	if err != nil || c.ReadPolicy != (apiperf.RatePolicy{}) || len(c.TrustedProxies) != 2 || c.WriteTimeout >= 0 || c.ReadTimeout != 10*time.Second {
		t.Fatalf("%+v %v", c, err)
	}
}

// startRun runs the program in process with the given environment and
// returns its base URL; cancelling stop is SIGTERM.
func startRun(t *testing.T, vars map[string]string) (base string, stop func() error) {
	t.Helper()
	return startRunWith(t, vars, nil)
}

// startRunWith is startRun with a hook that also sees the metrics address.
func startRunWith(t *testing.T, vars map[string]string, hook listening) (base string, stop func() error) {
	t.Helper()
	vars["LOG_LEVEL"] = "warn"
	return startRunLogs(t, vars, hook, io.Discard)
}

// startRunLogs is startRunWith with the program's log written to logs and
// LOG_LEVEL left to vars.
func startRunLogs(t *testing.T, vars map[string]string, hook listening, logs io.Writer) (base string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	vars["HTTP_ADDR"] = "127.0.0.1:0"
	go func() {
		done <- run(ctx, nil, env(vars), io.Discard, logs, func(api, metrics string) {
			if hook != nil {
				hook(api, metrics)
			}
			addrs <- api
		})
	}()
	select {
	case a := <-addrs:
		base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("run ended before listening: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start")
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Error("server did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return base, stop
}

// call sends one request, with a JSON body when body is not empty and the
// header pairs that follow it, and returns the status and the body.
func call(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestRun_EndToEnd drives the real program on the embedded default and on
// MariaDB + Redis: the README's curl examples, metrics, readiness, and a
// clean drain on shutdown.
func TestRun_EndToEnd(t *testing.T) {
	for name, vars := range map[string]func(t *testing.T) map[string]string{
		"Embedded": func(t *testing.T) map[string]string { return map[string]string{"DATA_DIR": t.TempDir()} },
		"MySQLRedis": func(t *testing.T) map[string]string {
			// A prefix of its own: product 1 of this fresh database must not
			// meet a cached product 1 of another test sharing the Redis.
			return map[string]string{"MYSQL_DSN": testenv.MySQLDSN(t), "REDIS_URL": "redis://" + testenv.RedisAddr(),
				"REDIS_KEY_PREFIX": testenv.UniqueName("e2e-") + ":"}
		},
	} {
		t.Run(name, func(t *testing.T) {
			base, stop := startRun(t, vars(t))
			steps := []struct {
				method, path, body string
				status             int
				contains           string
			}{
				{"GET", "/products/1", "", 404, `"status":404`}, // cached as absent
				{"POST", "/products", `{"name": "Test Product", "price": 99.99}`, 201, `"price":99.99`},
				{"GET", "/products/1", "", 200, `"price":99.99`}, // the create cleared the cached absence
				{"GET", "/products", "", 200, `"price":99.99`},
				{"POST", "/orders", `{"product_id": 1, "quantity": 2}`, 201, `"total":199.98`},
				{"GET", "/orders", "", 200, `"quantity":2`},
				{"GET", "/products/1", "", 200, `"stock":98`},
				{"GET", "/readyz", "", 200, `"status":"ok"`},
				{"GET", "/healthz", "", 200, `"ok"`},
				{"GET", "/metrics", "", 200, `apiperf_http_requests_total{method="POST",route="/products",status="201"} 1`},
			}
			for _, s := range steps {
				status, body := call(t, s.method, base+s.path, s.body)
				if status != s.status || !strings.Contains(body, s.contains) {
					t.Fatalf("%s %s: %d %s; want %d containing %s", s.method, s.path, status, body, s.status, s.contains)
				}
			}
			if err := stop(); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			if _, err := http.Get(base + "/healthz"); err == nil {
				t.Fatal("still serving after shutdown")
			}
		})
	}
}

func TestRun_Subcommands(t *testing.T) {
	dir := t.TempDir()
	if err := run(context.Background(), []string{"migrate"}, env(map[string]string{"DATA_DIR": dir}), io.Discard, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"bogus"}, env(nil), io.Discard, io.Discard, nil); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
	base, _ := startRun(t, map[string]string{"DATA_DIR": dir})
	port := base[strings.LastIndexByte(base, ':')+1:]
	if err := run(context.Background(), []string{"healthcheck"}, env(map[string]string{"HTTP_ADDR": ":" + port}), io.Discard, io.Discard, nil); err != nil {
		t.Fatalf("healthcheck against a live server: %v", err)
	}
	if err := run(context.Background(), []string{"healthcheck"}, env(map[string]string{"HTTP_ADDR": ":1"}), io.Discard, io.Discard, nil); err == nil {
		t.Fatal("healthcheck passed with nothing listening")
	}
}

// TestRun_PurgesAtStart checks that expired idempotency records go when the
// process starts, not an hour later: short-lived processes would never purge.
func TestRun_PurgesAtStart(t *testing.T) {
	dir := t.TempDir()
	db, err := storage.Open(context.Background(), storage.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO idempotency_records (scope, idem_key, request_hash, status_code, body, created_at, expires_at)
		VALUES (zeroblob(32), ?, x'00', 201, x'7b7d', '2000-01-01T00:00:00.000Z', ?)`
	for key, expires := range map[string]string{"expired": "2000-01-02T00:00:00.000Z", "live": "2999-01-01T00:00:00.000Z"} {
		if _, err := db.SQL().Exec(insert, key, expires); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	startRun(t, map[string]string{"DATA_DIR": dir})

	db, err = storage.Open(context.Background(), storage.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var left []string
	for range 200 {
		left = left[:0]
		rows, err := db.SQL().Query(`SELECT idem_key FROM idempotency_records ORDER BY idem_key`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				t.Fatal(err)
			}
			left = append(left, k)
		}
		rows.Close()
		if len(left) == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) != 1 || left[0] != "live" {
		t.Fatalf("records left after start: %v, want only the live one", left)
	}
}
