package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/limiter"
	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/tracing"
)

// config is every setting, read once from the environment and validated;
// an invalid value stops start-up with a message naming its variable.
type config struct {
	HTTPAddr            string
	MetricsAddr         string
	MySQLDSN            string
	DataDir             string
	SQLiteSynchronous   string
	RedisURL            string
	RedisClientCache    bool
	RedisKeyPrefix      string
	CacheEnabled        bool
	PprofAddr           string
	CacheTTL            time.Duration
	ReadPolicy          apiperf.RatePolicy // zero when RATE_LIMIT_READ=off
	WritePolicy         apiperf.RatePolicy // zero when RATE_LIMIT_WRITE=off
	AuthFailPolicy      apiperf.RatePolicy // zero when RATE_LIMIT_AUTH_FAILURES=off
	IPv6Prefix          int
	ForwardedHeader     server.ForwardedHeader
	FailClosed          bool
	RateLimitDebt       int
	RateLimitDebtDelay  time.Duration
	RateLimitMaxClients int
	RedisTimeout        time.Duration
	CacheTimeout        time.Duration
	TrustedProxies      []netip.Prefix
	APIKeys             []string
	DBMaxOpenConns      int
	DBMaxIdleConns      int
	DBQueryTimeout      time.Duration
	OrderBatching       bool
	OrderLanes          int
	OrderBatchMax       int
	OrderQueueMax       int
	ReplicaDSNs         []string
	ReplicaMaxLag       time.Duration
	ReplicaTimeout      time.Duration
	ShutdownTimeout     time.Duration
	RequestTimeout      time.Duration
	ReadTimeout         time.Duration
	WriteTimeout        time.Duration
	IdleTimeout         time.Duration
	LogLevel            slog.Level
	LogFormat           string
	AccessLog           string
	MaxBodySize         int
	MaxHeaderBytes      int
	MaxConns            int
	MaxConnsPerClient   int
	LambdaStripPrefix   string
	LambdaRuntimeAPI    string

	// Tracing is the OpenTelemetry setup; its Endpoint is empty when
	// tracing is off (no OTLP endpoint, or OTEL_SDK_DISABLED=true).
	Tracing tracing.Config
	// The OTEL_* variables as given; loadConfig resolves them into Tracing.
	otlpEndpoint, otlpTracesEndpoint, otlpProtocol string
	otelSampler, otelSamplerArg                    string
	otelDisabled                                   bool

	// wrapProducts, set only by tests, wraps the product store (to count
	// the queries that reach the database).
	wrapProducts func(apiperf.ProductStore) apiperf.ProductStore
}

// setting is one environment variable of the configuration. The table of
// them below is the only list: loadConfig parses it, `api-perf --help`
// prints it, and a test holds README's table and .env.example to it.
type setting struct {
	Name string
	// Default is the value an unset or empty variable takes, as written
	// in .env.example ("" for empty).
	Default string
	// Meaning is one or two sentences for --help and README (Markdown
	// code spans allowed; --help drops the backquotes).
	Meaning string
	// parse stores a value (the variable's, or Default) into c, or says
	// what is wrong with it; loadConfig prefixes the variable's name.
	parse func(c *config, value string) error
}

// settings lists every variable in the order --help and README show them.
var settings = []setting{
	{"HTTP_ADDR", ":8080", "API listener address.",
		text(func(c *config) *string { return &c.HTTPAddr })},
	{"METRICS_ADDR", "", "Separate listener for `/metrics`; empty serves it on `HTTP_ADDR`.",
		text(func(c *config) *string { return &c.MetricsAddr })},
	{"PPROF_ADDR", "", "`net/http/pprof` listener for profiling; empty turns it off. Keep it off public ports.",
		text(func(c *config) *string { return &c.PprofAddr })},
	{"MYSQL_DSN", "", "go-sql-driver DSN such as `user:pw@tcp(host:3306)/apiperf?parseTime=true`; empty serves on SQLite under `DATA_DIR`.",
		func(c *config, v string) error {
			if v != "" && !strings.Contains(v, "/") {
				return errors.New("must look like user:password@tcp(host:3306)/database")
			}
			c.MySQLDSN = v
			return nil
		}},
	{"DATA_DIR", "./data", "Where the embedded SQLite file lives (`/tmp/data` on Lambda unless set).",
		text(func(c *config) *string { return &c.DataDir })},
	{"SQLITE_SYNCHRONOUS", "full", "`full` syncs every SQLite commit to disk before the client hears of it; `normal` is faster but a power loss (not a crash) can undo the last commits, orders already confirmed to clients included.",
		func(c *config, v string) error {
			switch v {
			case "full", "normal":
				c.SQLiteSynchronous = v
				return nil
			}
			return errors.New("must be full or normal")
		}},
	{"DB_MAX_OPEN_CONNS", "0", "Database pool size; 0 picks 8 × cores on MySQL, 4 on SQLite.",
		integer(0, 10_000, func(c *config) *int { return &c.DBMaxOpenConns })},
	{"DB_MAX_IDLE_CONNS", "0", "Idle connections kept; 0 keeps as many as `DB_MAX_OPEN_CONNS`.",
		integer(0, 10_000, func(c *config) *int { return &c.DBMaxIdleConns })},
	{"DB_QUERY_TIMEOUT", "5s", "Deadline of every store call; past it the request gets a 503.",
		duration(func(c *config) *time.Duration { return &c.DBQueryTimeout })},
	{"ORDER_BATCHING", "on", "Coalesce concurrent orders into shared transactions (`docs/batching.md`); `off` gives every order its own.",
		onOff(func(c *config) *bool { return &c.OrderBatching })},
	{"ORDER_LANES", "0", "Order batches that may commit at once, each for its own share of the products; 0 picks a quarter of `DB_MAX_OPEN_CONNS` (at least 1) on MySQL and 1 on SQLite.",
		integer(0, 10_000, func(c *config) *int { return &c.OrderLanes })},
	{"ORDER_BATCH_MAX", "128", "Most orders in one batch's transaction.",
		integer(1, 10_000, func(c *config) *int { return &c.OrderBatchMax })},
	{"ORDER_QUEUE_MAX", "1024", "Orders that may wait in one lane while its batch commits; more are answered 503 with `Retry-After` at once.",
		integer(1, 1_000_000, func(c *config) *int { return &c.OrderQueueMax })},
	{"MYSQL_READ_DSN", "", "Comma-separated DSNs of read replicas of `MYSQL_DSN` (RDS read replicas, Aurora readers); list reads go to one within `MYSQL_READ_MAX_LAG`, everything else to the primary. Empty reads everything from the primary.",
		func(c *config, v string) error {
			for _, dsn := range splitList(v) {
				if !strings.Contains(dsn, "/") {
					return fmt.Errorf("%q must look like user:password@tcp(host:3306)/database", redactDSN(dsn))
				}
				c.ReplicaDSNs = append(c.ReplicaDSNs, dsn)
			}
			return nil
		}},
	{"MYSQL_READ_MAX_LAG", "1s", "A replica further behind the primary than this (replication heartbeat, measured in the background) takes no list reads; lists never miss a write acknowledged longer ago.",
		duration(func(c *config) *time.Duration { return &c.ReplicaMaxLag })},
	{"MYSQL_READ_TIMEOUT", "500ms", "Deadline of one list read or health check on a replica (at most half of `DB_QUERY_TIMEOUT`); past it the read runs on another replica or the primary, and the replica is skipped until it answers again.",
		duration(func(c *config) *time.Duration { return &c.ReplicaTimeout })},
	{"REDIS_URL", "", "`redis://[user:pw@]host:port[/db]`, `rediss://` for TLS or `unix://`; empty caches and rate-limits in process.",
		func(c *config, v string) error {
			if v != "" && !strings.HasPrefix(v, "redis://") && !strings.HasPrefix(v, "rediss://") && !strings.HasPrefix(v, "unix://") {
				return errors.New("must start with redis://, rediss:// or unix://")
			}
			c.RedisURL = v
			return nil
		}},
	{"REDIS_KEY_PREFIX", "apiperf:", "Starts every Redis key, so deployments can share one Redis (keys carry `{hash tags}` for Redis Cluster).",
		text(func(c *config) *string { return &c.RedisKeyPrefix })},
	{"REDIS_CLIENT_CACHE", "on", "`off` for Redis without `CLIENT TRACKING`; off by default on Lambda, whose frozen environments read no invalidation pushes.",
		onOff(func(c *config) *bool { return &c.RedisClientCache })},
	{"REDIS_TIMEOUT", "5ms", "Deadline of one rate-limiter call to Redis before the fallback decides.",
		duration(func(c *config) *time.Duration { return &c.RedisTimeout })},
	{"CACHE", "on", "Product body cache, `on` or `off`.",
		onOff(func(c *config) *bool { return &c.CacheEnabled })},
	{"CACHE_TTL", "60s", "Product body TTL, client-side and in Redis.",
		duration(func(c *config) *time.Duration { return &c.CacheTTL })},
	{"CACHE_TIMEOUT", "50ms", "Deadline of one cache call to Redis before reads go to the database.",
		duration(func(c *config) *time.Duration { return &c.CacheTimeout })},
	{"RATE_LIMIT_READ", "100/1s,burst=200", "GCRA limit per client on reads: `RATE/PERIOD[,burst=N]` or `off`.",
		policy("read", func(c *config) *apiperf.RatePolicy { return &c.ReadPolicy })},
	{"RATE_LIMIT_WRITE", "20/1s,burst=40", "GCRA limit per client on writes: `RATE/PERIOD[,burst=N]` or `off`.",
		policy("write", func(c *config) *apiperf.RatePolicy { return &c.WritePolicy })},
	{"RATE_LIMIT_DEBT", "8", "Requests per client a replica may allow before Redis has charged them, while the client's bucket is at least half full, and never more than an eighth of the policy's burst (a burst under 8 is always exact); `0` makes every decision wait for Redis, the default on Lambda. Across N replicas a client gets at most burst + rate × t + N × min(this, burst/8).",
		func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000 {
				return fmt.Errorf("%q is not a whole number from 0 to 1000", v)
			}
			c.RateLimitDebt = n
			return nil
		}},
	{"RATE_LIMIT_MAX_CLIENTS", strconv.Itoa(limiter.DefaultMaxClients), "Clients a replica keeps rate-limit state for in process (about 250 bytes each); beyond it a new client is decided by one Redis call per request, exactly, until idle clients make room. The in-process limiter (no `REDIS_URL`, or while Redis is down) keeps as many, and decides a new client beyond them on one of 1,024 buckets per policy that such clients share. `0` removes the cap.",
		integer(0, 100_000_000, func(c *config) *int { return &c.RateLimitMaxClients })},
	{"RATE_LIMIT_DEBT_DELAY", "1s", "How long debt below `RATE_LIMIT_DEBT` may wait before it is charged, so that the requests of a slow client share one Redis call; debt that reaches the cap is charged at once. `0` or `off` charges every debt at once; under `1ms` counts as `1ms`.",
		durationOrOff(func(c *config) *time.Duration { return &c.RateLimitDebtDelay })},
	{"RATE_LIMIT_AUTH_FAILURES", "10/1m,burst=10", "GCRA limit per address on failed authentications (when `API_KEYS` is set: writes without a valid key, and any request whose bearer token is no key); once spent they get 429 instead of 401. `off` leaves them unlimited.",
		policy("auth", func(c *config) *apiperf.RatePolicy { return &c.AuthFailPolicy })},
	{"RATE_LIMIT_IPV6_PREFIX", "64", "Prefix length that groups IPv6 clients for rate limiting: every address in one /64 (one subscriber's allocation) is one client. `128` limits each address.",
		integer(1, 128, func(c *config) *int { return &c.IPv6Prefix })},
	{"RATE_LIMIT_FAILURE", "open", "When Redis fails: `open` limits in process, `closed` answers 503.",
		func(c *config, v string) error {
			v, err := oneOf(v, "open", "closed")
			c.FailClosed = v == "closed"
			return err
		}},
	{"TRUSTED_PROXY_HEADER", "X-Forwarded-For", "The header trusted proxies name the client in: `X-Forwarded-For` or `Forwarded` (RFC 7239). The other one is ignored.",
		func(c *config, v string) error {
			switch strings.ToLower(v) {
			case "x-forwarded-for":
				c.ForwardedHeader = server.XForwardedFor
			case "forwarded":
				c.ForwardedHeader = server.Forwarded
			default:
				return fmt.Errorf("%q is not one of X-Forwarded-For, Forwarded", v)
			}
			return nil
		}},
	{"TRUSTED_PROXIES", "", "Comma-separated CIDRs or addresses whose forwarding header (`TRUSTED_PROXY_HEADER`) is believed; the client is the rightmost address in it that is not one of them.",
		func(c *config, v string) error {
			for _, s := range splitList(v) {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					a, aerr := netip.ParseAddr(s)
					if aerr != nil {
						return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				c.TrustedProxies = append(c.TrustedProxies, p.Masked())
			}
			return nil
		}},
	{"API_KEYS", "", "Comma-separated keys of at least 16 characters; when set, writes need `Authorization: Bearer <key>`.",
		func(c *config, v string) error {
			for _, k := range splitList(v) {
				if len(k) < 16 {
					return errors.New("every key must be at least 16 characters")
				}
				c.APIKeys = append(c.APIKeys, k)
			}
			return nil
		}},
	{"MAX_BODY_BYTES", strconv.Itoa(server.DefaultMaxBodySize), "Largest accepted request body in bytes (413 above it).",
		integer(1024, 64<<20, func(c *config) *int { return &c.MaxBodySize })},
	{"REQUEST_TIMEOUT", "10s", "Budget of one request: its store, cache and rate-limiter calls end when it is spent (each may end sooner, at `DB_QUERY_TIMEOUT` for instance), and the request gets a 503. On Lambda the invocation's deadline bounds it too. `0` sets no budget.",
		durationOrOff(func(c *config) *time.Duration { return &c.RequestTimeout })},
	{"HTTP_MAX_HEADER_BYTES", strconv.Itoa(server.DefaultMaxHeaderBytes), "Largest request line and headers in bytes (431 above it); also each connection's read buffer.",
		integer(4096, 1<<20, func(c *config) *int { return &c.MaxHeaderBytes })},
	{"HTTP_MAX_CONNS", strconv.Itoa(server.DefaultMaxConns), "Open connections the server holds; one more is answered 503 and closed at once (load shedding).",
		integer(1, 1_000_000, func(c *config) *int { return &c.MaxConns })},
	{"HTTP_MAX_CONNS_PER_CLIENT", strconv.Itoa(server.DefaultMaxConnsPerClient), "Open connections one client address holds (IPv6 grouped by `RATE_LIMIT_IPV6_PREFIX`); one more is answered 503 and closed. `TRUSTED_PROXIES` are exempt.",
		integer(1, 1_000_000, func(c *config) *int { return &c.MaxConnsPerClient })},
	{"HTTP_READ_TIMEOUT", seconds(server.DefaultReadTimeout), "Slow-client bound on reading a request; `0` turns it off behind a proxy that enforces its own.",
		durationOrOff(func(c *config) *time.Duration { return &c.ReadTimeout })},
	{"HTTP_WRITE_TIMEOUT", seconds(server.DefaultWriteTimeout), "Slow-client bound on writing a response; `0` turns it off.",
		durationOrOff(func(c *config) *time.Duration { return &c.WriteTimeout })},
	{"HTTP_IDLE_TIMEOUT", seconds(server.DefaultIdleTimeout), "How long an idle keep-alive connection stays open; `0` turns it off.",
		durationOrOff(func(c *config) *time.Duration { return &c.IdleTimeout })},
	{"SHUTDOWN_TIMEOUT", "15s", "Drain time after SIGTERM.",
		duration(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
	{"LOG_LEVEL", "info", "`log/slog` level: `debug`, `info`, `warn` or `error`.",
		func(c *config, v string) error {
			if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
				return fmt.Errorf("%q is not one of debug, info, warn, error", v)
			}
			return nil
		}},
	{"LOG_FORMAT", "json", "`json` or `text`.",
		func(c *config, v string) (err error) {
			c.LogFormat, err = oneOf(v, "json", "text")
			return err
		}},
	{"ACCESS_LOG", "errors", "`all`, `errors` (5xx only) or `off`; a line per request costs throughput.",
		func(c *config, v string) (err error) {
			c.AccessLog, err = oneOf(v, "all", "errors", "off")
			return err
		}},
	{"LAMBDA_STRIP_PREFIX", "", "Base path removed from Lambda event paths (e.g. `/prod`).",
		text(func(c *config) *string { return &c.LambdaStripPrefix })},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "", "Base URL of an OTLP/HTTP collector, such as `http://otel-collector:4318`; spans go to its `/v1/traces`. Empty, with no `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, turns tracing off: no spans, no exporter (see docs/tracing.md).",
		otlpURL(func(c *config) *string { return &c.otlpEndpoint })},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "Full URL spans are sent to, used as it is; overrides `OTEL_EXPORTER_OTLP_ENDPOINT`.",
		otlpURL(func(c *config) *string { return &c.otlpTracesEndpoint })},
	{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTLP transport: `http/protobuf`, the one this build exports with (`grpc` and `http/json` stop start-up while an endpoint is set).",
		func(c *config, v string) error {
			c.otlpProtocol = strings.ToLower(v)
			return nil
		}},
	{"OTEL_EXPORTER_OTLP_HEADERS", "", "Headers sent with every export: `key=value` pairs, comma-separated, values percent-encoded (a collector's API key).",
		func(c *config, v string) (err error) {
			c.Tracing.Headers, err = tracing.ParseHeaders(v)
			return err
		}},
	{"OTEL_SERVICE_NAME", "api-perf", "`service.name` of the spans.",
		text(func(c *config) *string { return &c.Tracing.ServiceName })},
	{"OTEL_TRACES_SAMPLER", "parentbased_always_on", "Which traces are recorded: `always_on`, `always_off`, `traceidratio`, or `parentbased_` and one of those (follow the caller's `traceparent` decision when it sends one).",
		func(c *config, v string) error {
			c.otelSampler = strings.ToLower(v)
			_, err := tracing.ParseSampler(v, "")
			return stripName(err, "OTEL_TRACES_SAMPLER: ")
		}},
	{"OTEL_TRACES_SAMPLER_ARG", "", "Ratio the `traceidratio` samplers record, 0 to 1, such as `0.01`; empty means 1.",
		func(c *config, v string) error {
			c.otelSamplerArg = v
			_, err := tracing.ParseSampler("", v)
			return stripName(err, "OTEL_TRACES_SAMPLER_ARG: ")
		}},
	{"OTEL_SDK_DISABLED", "false", "`true` turns tracing off whatever else is set.",
		func(c *config, v string) error {
			v, err := oneOf(v, "false", "true")
			c.otelDisabled = v == "true"
			return err
		}},
}

// configError collects every bad variable, so one start-up attempt reports
// all of them.
type configError []string

func (e configError) Error() string { return "invalid configuration:\n  " + strings.Join(e, "\n  ") }

// loadConfig reads every setting from getenv, applies the defaults that
// depend on the runtime (Lambda, the database), and reports every bad
// value at once.
func loadConfig(getenv func(string) string) (config, error) {
	var errs configError
	var c config
	for _, s := range settings {
		v := strings.TrimSpace(getenv(s.Name))
		if v == "" {
			v = s.Default
		}
		if err := s.parse(&c, v); err != nil {
			errs = append(errs, s.Name+": "+err.Error())
		}
	}
	// Set by the Lambda runtime, not by the operator, so not a setting.
	c.LambdaRuntimeAPI = strings.TrimSpace(getenv("AWS_LAMBDA_RUNTIME_API"))
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
	// Debt pays off for a process serving many clients at once; a Lambda
	// environment serves one request at a time, there may be hundreds of
	// them (the bound grows by a debt per environment), and one frozen or
	// reclaimed between invocations charges its debt late or never. Unless
	// told otherwise, every decision on Lambda is Redis's.
	if c.LambdaRuntimeAPI != "" && getenv("RATE_LIMIT_DEBT") == "" {
		c.RateLimitDebt = 0
	}
	if len(c.ReplicaDSNs) > 0 && c.MySQLDSN == "" {
		errs = append(errs, "MYSQL_READ_DSN: read replicas need MYSQL_DSN (the embedded SQLite database has none)")
	}
	errs = append(errs, c.resolveTracing()...)
	if c.DBMaxOpenConns == 0 && c.MySQLDSN != "" {
		c.DBMaxOpenConns = 8 * runtime.GOMAXPROCS(0)
	}
	// SQLite has one writer: more lanes would only queue on it. On MySQL,
	// fewer lanes than connections make larger batches (docs/batching.md
	// has the measurements) and leave connections to the reads.
	if c.OrderLanes == 0 {
		c.OrderLanes = 1
		if c.MySQLDSN != "" {
			c.OrderLanes = max(1, c.DBMaxOpenConns/4)
		}
	}
	if len(errs) > 0 {
		return c, errs
	}
	return c, nil
}

// resolveTracing turns the OTEL_* variables into c.Tracing: an endpoint
// (the traces URL, or the base URL and /v1/traces) and a sampler. Tracing
// stays off, whatever the other variables say, without an endpoint.
func (c *config) resolveTracing() (errs []string) {
	endpoint, err := tracing.TracesEndpoint(c.otlpEndpoint, c.otlpTracesEndpoint)
	if err != nil || endpoint == "" || c.otelDisabled {
		return nil // a bad URL is reported by its own setting
	}
	if !slices.Contains(tracing.Protocols, c.otlpProtocol) {
		return []string{fmt.Sprintf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported: this build exports over %s "+
			"(every OpenTelemetry Collector accepts it, on port 4318)", c.otlpProtocol, strings.Join(tracing.Protocols, ", "))}
	}
	sampler, err := tracing.ParseSampler(c.otelSampler, c.otelSamplerArg)
	if err != nil {
		return []string{err.Error()}
	}
	c.Tracing.Endpoint, c.Tracing.Sampler = endpoint, sampler
	return nil
}

// otlpURL parses an OTLP endpoint URL (empty allowed).
func otlpURL(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if _, err := tracing.TracesEndpoint(v, ""); err != nil {
			return err
		}
		*field(c) = v
		return nil
	}
}

// stripName drops the variable's name from err, which loadConfig adds back.
func stripName(err error, name string) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.TrimPrefix(err.Error(), name))
}

// The parsers below build a setting's parse function for a field of
// config; each returns an error that describes the value only.

func text(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		*field(c) = v
		return nil
	}
}

func duration(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration such as 5s or 250ms", v)
		}
		*field(c) = d
		return nil
	}
}

// durationOrOff is duration that also takes "0" or "off", which disable
// the timeout (stored as -1).
func durationOrOff(field func(*config) *time.Duration) func(*config, string) error {
	parse := duration(field)
	return func(c *config, v string) error {
		if v = strings.ToLower(v); v == "0" || v == "off" {
			*field(c) = -1
			return nil
		}
		return parse(c, v)
	}
}

func integer(lo, hi int, field func(*config) *int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%q is not an integer between %d and %d", v, lo, hi)
		}
		*field(c) = n
		return nil
	}
}

func onOff(field func(*config) *bool) func(*config, string) error {
	return func(c *config, v string) error {
		v, err := oneOf(v, "on", "off")
		*field(c) = v == "on"
		return err
	}
}

// oneOf returns v in lower case if it is one of allowed.
func oneOf(v string, allowed ...string) (string, error) {
	v = strings.ToLower(v)
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return allowed[0], fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

// policy parses a rate-limit policy and names it; "off" stores the zero
// policy, which the server takes for no limit.
func policy(name string, field func(*config) *apiperf.RatePolicy) func(*config, string) error {
	return func(c *config, v string) error {
		p, err := limiter.ParsePolicy(v)
		if err != nil {
			return err
		}
		if p != (apiperf.RatePolicy{}) {
			p.Name = name
		}
		*field(c) = p
		return nil
	}
}

// redactDSN hides the password of a DSN quoted in an error message.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	if at < 0 {
		return dsn
	}
	if colon := strings.Index(dsn[:at], ":"); colon >= 0 {
		return dsn[:colon+1] + "***" + dsn[at:]
	}
	return dsn
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

// seconds writes a default duration the way README and .env.example do:
// "90s", not time.Duration's "1m30s".
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
