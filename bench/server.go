package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// HugeLimit is a rate-limit policy no benchmark can exhaust: the limiter
// does all its work and never refuses, so its cost is what is measured.
const HugeLimit = "1000000/1s,burst=1000000"

// ServerConfig is one api-perf instance's settings, turned into the
// environment variables the binary reads.
type ServerConfig struct {
	Binary   string
	Addr     string // HTTP_ADDR
	MySQLDSN string // empty: the embedded SQLite default under DataDir
	DataDir  string
	RedisURL string // empty: the in-process cache and limiter
	// ReadLimit and WriteLimit are RATE_LIMIT_READ / RATE_LIMIT_WRITE;
	// empty means "off".
	ReadLimit, WriteLimit string
	// CacheOff sets CACHE=off (a server without the switch ignores it).
	CacheOff bool
	CacheTTL string // CACHE_TTL; empty keeps the default
	// PprofAddr sets PPROF_ADDR, the profiler's listener.
	PprofAddr      string
	DBMaxOpenConns int // DB_MAX_OPEN_CONNS; 0 keeps the server's default
	CPUs           string
	Extra          []string // more KEY=value pairs
}

// Env is the configuration as environment variables.
func (c ServerConfig) Env() []string {
	env := []string{"HTTP_ADDR=" + c.Addr, "ACCESS_LOG=off", "LOG_LEVEL=warn",
		"RATE_LIMIT_READ=" + or(c.ReadLimit, "off"), "RATE_LIMIT_WRITE=" + or(c.WriteLimit, "off")}
	if c.MySQLDSN != "" {
		env = append(env, "MYSQL_DSN="+c.MySQLDSN)
	}
	if c.DataDir != "" {
		env = append(env, "DATA_DIR="+c.DataDir)
	}
	if c.RedisURL != "" {
		env = append(env, "REDIS_URL="+c.RedisURL)
	}
	if c.CacheOff {
		env = append(env, "CACHE=off")
	}
	if c.CacheTTL != "" {
		env = append(env, "CACHE_TTL="+c.CacheTTL)
	}
	if c.PprofAddr != "" {
		env = append(env, "PPROF_ADDR="+c.PprofAddr)
	}
	if c.DBMaxOpenConns > 0 {
		env = append(env, "DB_MAX_OPEN_CONNS="+strconv.Itoa(c.DBMaxOpenConns))
	}
	return append(env, c.Extra...)
}

// StartServer starts api-perf and waits for /healthz.
func StartServer(ctx context.Context, name string, c ServerConfig) (*Process, error) {
	return Start(ctx, ProcessOptions{Name: name, Binary: c.Binary, Env: c.Env(), Addr: c.Addr, CPUs: c.CPUs})
}

// Migrate runs "api-perf migrate" against dsn, creating the schema the
// ceilings share with the server.
func Migrate(ctx context.Context, binary, dsn string) error {
	cmd := exec.CommandContext(ctx, binary, "migrate")
	cmd.Env = append(baseEnv(), "MYSQL_DSN="+dsn, "LOG_LEVEL=warn")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("api-perf migrate: %v\n%s", err, b)
	}
	return nil
}

// SupportsSetting reports whether the binary knows the variable name: it
// is given an invalid value and the healthcheck command run, which
// validates the configuration first. A binary that knows the variable
// names it in the error; one that does not goes on to probe a closed port.
func SupportsSetting(ctx context.Context, binary, name string) bool {
	cmd := exec.CommandContext(ctx, binary, "healthcheck")
	cmd.Env = append(baseEnv(), "HTTP_ADDR=127.0.0.1:1", name+"=not-a-valid-value")
	out, _ := cmd.CombinedOutput()
	return strings.Contains(string(out), name+":")
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
