package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/limiter"
)

// config is every setting, read once from the environment and validated;
// an invalid value stops start-up with a message naming its variable.
type config struct {
	HTTPAddr          string
	MetricsAddr       string
	MySQLDSN          string
	DataDir           string
	RedisURL          string
	RedisClientCache  bool
	RedisKeyPrefix    string
	CacheEnabled      bool
	PprofAddr         string
	CacheTTL          time.Duration
	ReadPolicy        limiter.Policy
	ReadLimited       bool
	WritePolicy       limiter.Policy
	WriteLimited      bool
	FailClosed        bool
	RedisTimeout      time.Duration
	CacheTimeout      time.Duration
	TrustedProxies    []netip.Prefix
	APIKeys           []string
	DBMaxOpenConns    int
	DBMaxIdleConns    int
	DBQueryTimeout    time.Duration
	ShutdownTimeout   time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	LogLevel          slog.Level
	LogFormat         string
	AccessLog         string
	MaxBodySize       int
	LambdaStripPrefix string
	LambdaRuntimeAPI  string

	// wrapProducts, set only by tests, wraps the product store (to count
	// the queries that reach the database).
	wrapProducts func(apiperf.ProductStore) apiperf.ProductStore
}

// configError collects every bad variable, so one start-up attempt reports
// all of them.
type configError []string

func (e configError) Error() string { return "invalid configuration:\n  " + strings.Join(e, "\n  ") }

func loadConfig(getenv func(string) string) (config, error) {
	var errs configError
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	dur := func(name, def string) time.Duration {
		d, err := time.ParseDuration(get(name, def))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Sprintf("%s: %q is not a positive duration such as 5s or 250ms", name, get(name, def)))
		}
		return d
	}
	// durOrOff is dur that also takes "0" or "off", which disable the timeout.
	durOrOff := func(name, def string) time.Duration {
		if v := strings.ToLower(get(name, def)); v == "0" || v == "off" {
			return -1
		}
		return dur(name, def)
	}
	num := func(name string, def, lo, hi int) int {
		n, err := strconv.Atoi(get(name, strconv.Itoa(def)))
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Sprintf("%s: %q is not an integer between %d and %d", name, get(name, ""), lo, hi))
		}
		return n
	}
	oneOf := func(name, def string, allowed ...string) string {
		v := strings.ToLower(get(name, def))
		for _, a := range allowed {
			if v == a {
				return v
			}
		}
		errs = append(errs, fmt.Sprintf("%s: %q is not one of %s", name, v, strings.Join(allowed, ", ")))
		return def
	}
	policy := func(name, def string) (limiter.Policy, bool) {
		p, off, err := limiter.ParsePolicy(get(name, def))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			return p, false
		}
		if p.Name == "" {
			p.Name = strings.ToLower(strings.TrimPrefix(name, "RATE_LIMIT_"))
		}
		return p, !off
	}

	c := config{
		HTTPAddr:          get("HTTP_ADDR", ":8080"),
		MetricsAddr:       get("METRICS_ADDR", ""),
		MySQLDSN:          get("MYSQL_DSN", ""),
		DataDir:           get("DATA_DIR", "./data"),
		RedisURL:          get("REDIS_URL", ""),
		RedisKeyPrefix:    get("REDIS_KEY_PREFIX", "apiperf:"),
		RedisClientCache:  oneOf("REDIS_CLIENT_CACHE", "on", "on", "off") == "on",
		CacheTTL:          dur("CACHE_TTL", "60s"),
		CacheEnabled:      oneOf("CACHE", "on", "on", "off") == "on",
		PprofAddr:         get("PPROF_ADDR", ""),
		FailClosed:        oneOf("RATE_LIMIT_FAILURE", "open", "open", "closed") == "closed",
		RedisTimeout:      dur("REDIS_TIMEOUT", "5ms"),
		CacheTimeout:      dur("CACHE_TIMEOUT", "50ms"),
		DBMaxOpenConns:    num("DB_MAX_OPEN_CONNS", 0, 0, 10_000),
		DBMaxIdleConns:    num("DB_MAX_IDLE_CONNS", 0, 0, 10_000),
		DBQueryTimeout:    dur("DB_QUERY_TIMEOUT", "5s"),
		ShutdownTimeout:   dur("SHUTDOWN_TIMEOUT", "15s"),
		ReadTimeout:       durOrOff("HTTP_READ_TIMEOUT", "10s"),
		WriteTimeout:      durOrOff("HTTP_WRITE_TIMEOUT", "10s"),
		IdleTimeout:       durOrOff("HTTP_IDLE_TIMEOUT", "90s"),
		LogFormat:         oneOf("LOG_FORMAT", "json", "json", "text"),
		AccessLog:         oneOf("ACCESS_LOG", "errors", "all", "errors", "off"),
		MaxBodySize:       num("MAX_BODY_BYTES", 1<<20, 1024, 64<<20),
		LambdaStripPrefix: get("LAMBDA_STRIP_PREFIX", ""),
		LambdaRuntimeAPI:  get("AWS_LAMBDA_RUNTIME_API", ""),
	}
	c.ReadPolicy, c.ReadLimited = policy("RATE_LIMIT_READ", "100/1s,burst=200")
	c.WritePolicy, c.WriteLimited = policy("RATE_LIMIT_WRITE", "20/1s,burst=40")
	c.ReadPolicy.Name, c.WritePolicy.Name = "read", "write"
	// A Lambda function's working directory is read-only; /tmp is not.
	if c.LambdaRuntimeAPI != "" && getenv("DATA_DIR") == "" {
		c.DataDir = "/tmp/data"
	}
	// A frozen Lambda environment reads no invalidation pushes: thawed, it
	// could answer from its client-side copies before it has read the pushes
	// that arrived meanwhile. Unless told otherwise, every read asks Redis.
	if c.LambdaRuntimeAPI != "" && getenv("REDIS_CLIENT_CACHE") == "" {
		c.RedisClientCache = false
	}
	if c.DBMaxOpenConns == 0 && c.MySQLDSN != "" {
		c.DBMaxOpenConns = 8 * runtime.GOMAXPROCS(0)
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Sprintf("LOG_LEVEL: %q is not one of debug, info, warn, error", get("LOG_LEVEL", "")))
	}
	if c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") && !strings.HasPrefix(c.RedisURL, "unix://") {
		errs = append(errs, "REDIS_URL: must start with redis://, rediss:// or unix://")
	}
	if c.MySQLDSN != "" && !strings.Contains(c.MySQLDSN, "/") {
		errs = append(errs, "MYSQL_DSN: must look like user:password@tcp(host:3306)/database")
	}
	for _, s := range splitList(get("TRUSTED_PROXIES", "")) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				errs = append(errs, fmt.Sprintf("TRUSTED_PROXIES: %q is not a CIDR such as 10.0.0.0/8", s))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, p.Masked())
	}
	for _, k := range splitList(get("API_KEYS", "")) {
		if len(k) < 16 {
			errs = append(errs, "API_KEYS: every key must be at least 16 characters")
			break
		}
		c.APIKeys = append(c.APIKeys, k)
	}
	if len(errs) > 0 {
		return c, errs
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
