// Command api-perf serves the products-and-orders API.
//
//	api-perf              serve HTTP (or Lambda events when AWS_LAMBDA_RUNTIME_API is set)
//	api-perf migrate      apply database migrations and exit (also: migrate status|up|down N|force V)
//	api-perf healthcheck  exit 0 when the local server's /healthz answers 200 (container probes)
//	api-perf version      print the version, revision, build time and Go version
//	api-perf help         list the commands and every environment variable with its default
//
// With no MYSQL_DSN it serves on an embedded SQLite file, and with no
// REDIS_URL it caches and rate-limits in process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/promreg"
	"github.com/api-perf/api-perf/orderpipe"
	"github.com/api-perf/api-perf/server"
	"github.com/api-perf/api-perf/server/lambda"
	"github.com/api-perf/api-perf/storage"
	"github.com/api-perf/api-perf/tracing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "api-perf:", err)
		os.Exit(1)
	}
}

// listening is told the bound addresses once the server accepts
// connections; tests pass it to learn the ports of ":0" listeners.
type listening func(apiAddr, metricsAddr string)

// program is one invocation: its environment, its output streams and,
// for the commands that need them, the configuration and the logger.
type program struct {
	ctx            context.Context
	getenv         func(string) string
	stdout, stderr io.Writer
	onListen       listening
	cfg            config
	logger         *slog.Logger
}

// run is the whole program, parameterised for end-to-end tests. The
// command is read before the configuration, so that help and version
// answer even when a variable is wrong.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, onListen listening) error {
	name := "serve"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	c, ok := findCommand(name)
	if !ok {
		return fmt.Errorf("unknown command %q (run api-perf help for the list)", name)
	}
	p := &program{ctx: ctx, getenv: getenv, stdout: stdout, stderr: stderr, onListen: onListen}
	if len(args) > 0 && isHelpFlag(args[0]) {
		return printCommandHelp(stdout, c)
	}
	if c.Args == "" && len(args) > 0 {
		return fmt.Errorf("%s takes no arguments (usage: %s)", c.Name, c.usage())
	}
	if c.NeedsConfig {
		cfg, err := loadConfig(getenv)
		if err != nil {
			return err
		}
		p.cfg, p.logger = cfg, newLogger(cfg, stderr)
	}
	return c.run(p, args)
}

func (p *program) serve(_ []string) error { return serve(p.ctx, p.cfg, p.logger, p.onListen) }

func (p *program) healthcheck(_ []string) error { return healthcheck(p.cfg.HTTPAddr) }

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func storageConfig(cfg config) storage.Config {
	return storage.Config{
		MySQLDSN:          cfg.MySQLDSN,
		DataDir:           cfg.DataDir,
		SQLiteSynchronous: cfg.SQLiteSynchronous,
		MaxOpenConns:      cfg.DBMaxOpenConns,
		MaxIdleConns:      cfg.DBMaxIdleConns,
		QueryTimeout:      cfg.DBQueryTimeout,
	}
}

// openDB opens the store, migrating first, with the read replicas when
// MYSQL_READ_DSN names some; a dirty schema stops start-up with what to do
// about it.
func openDB(ctx context.Context, cfg config, logger *slog.Logger, reg prometheus.Registerer) (*storage.DB, error) {
	scfg := storageConfig(cfg)
	scfg.ReadDSNs, scfg.MaxReplicaLag, scfg.ReplicaTimeout = cfg.ReplicaDSNs, cfg.ReplicaMaxLag, cfg.ReplicaTimeout
	scfg.Logger, scfg.Registerer = logger, reg
	db, err := storage.Open(ctx, scfg)
	return db, storageError(err)
}

// storageError puts an error of storage's in the user's words: a setting
// it rejected by the variable's name, a dirty schema with what to do.
func storageError(err error) error { return explainMigration(nameSetting(err)) }

// storageSettings are the variables behind the storage.Config fields whose
// values Open may reject.
var storageSettings = map[string]string{"MySQLDSN": "MYSQL_DSN", "ReadDSNs": "MYSQL_READ_DSN", "DataDir": "DATA_DIR"}

// nameSetting says a storage.ConfigError in the words of the variable the
// user set, such as "MYSQL_READ_DSN: 10.0.0.1:3306 is listed twice".
func nameSetting(err error) error {
	var ce *storage.ConfigError
	if errors.As(err, &ce) {
		if name, ok := storageSettings[ce.Field]; ok {
			return fmt.Errorf("%s: %w", name, ce.Err)
		}
	}
	return err
}

// serve wires the stores, cache, limiter and metrics into the server, runs
// it until ctx ends, then drains in-flight requests and closes the pools.
func serve(ctx context.Context, cfg config, logger *slog.Logger, onListen listening) error {
	start := time.Now()
	if cfg.MySQLDSN == "" {
		logger.Info("using the embedded default: SQLite under DATA_DIR; set MYSQL_DSN and REDIS_URL for MySQL and Redis",
			"data_dir", cfg.DataDir)
	}
	reg := prometheus.NewRegistry()
	db, err := openDB(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer db.Close()

	if err := registerRuntimeMetrics(reg, db); err != nil {
		return err
	}
	metricsHandler := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	tp, err := openTracing(ctx, cfg, logger)
	if err != nil {
		return err
	}
	// Closed last (deferred first), after the server has drained, so that
	// the spans of the last requests are exported.
	defer tp.close(logger)

	be, err := openBackends(ctx, cfg, logger, reg, tp.provider())
	if err != nil {
		return err
	}
	defer be.Close()

	// With tracing, every store call is a span; the order pipeline's
	// batches are then one span each, under the request that led them.
	var products apiperf.ProductStore = db
	var dbOrders apiperf.OrderStore = db
	if tp != nil {
		traced := tracing.NewStores(db, db, tp.provider(), tracing.Database{System: db.Dialect(), Name: dbNamespace(cfg)})
		products, dbOrders = traced, traced
	}
	orders, err := orderStore(dbOrders, be.cache, cfg, logger, reg)
	if err != nil {
		return err
	}
	if cfg.wrapProducts != nil {
		products = cfg.wrapProducts(products)
	}
	scfg := server.Config{
		Products:          products,
		Orders:            orders,
		TracerProvider:    tp.provider(),
		Cache:             be.cache,
		Limiter:           be.limiter,
		ReadLimit:         cfg.ReadPolicy,
		WriteLimit:        cfg.WritePolicy,
		AuthFailureLimit:  cfg.AuthFailPolicy,
		IPv6Prefix:        cfg.IPv6Prefix,
		ForwardedHeader:   cfg.ForwardedHeader,
		Ready:             readinessChecks(db, be),
		APIKeys:           cfg.APIKeys,
		TrustedProxies:    cfg.TrustedProxies,
		AccessLog:         cfg.AccessLog,
		Logger:            logger,
		Registerer:        reg,
		MaxBodySize:       cfg.MaxBodySize,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		MaxConns:          cfg.MaxConns,
		MaxConnsPerClient: cfg.MaxConnsPerClient,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		RequestTimeout:    cfg.RequestTimeout,
	}
	if cfg.LambdaRuntimeAPI != "" {
		// An event's calls end with its invocation (the function's timeout).
		scfg.Invocation = lambda.InvocationContext
	}
	if cfg.MetricsAddr == "" {
		scfg.Metrics = metricsHandler
	}
	srv, err := server.New(scfg)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	go purgeIdempotencyRecords(ctx, db, logger)

	if cfg.LambdaRuntimeAPI != "" {
		logger.Info("serving Lambda events", "init_ms", time.Since(start).Milliseconds(), "database", db.Dialect(),
			"redis", cfg.RedisURL != "", "redis_client_cache", be.clientCache)
		return serveLambda(ctx, srv, tp, cfg.LambdaStripPrefix, logger)
	}

	if cfg.PprofAddr != "" {
		if err := servePprof(ctx, cfg.PprofAddr, logger); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	metricsAddr := ""
	var msrv *fasthttp.Server
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("METRICS_ADDR: %w", err)
		}
		metricsAddr = mln.Addr().String()
		msrv = &fasthttp.Server{Handler: metricsHandler, Name: "api-perf-metrics", ReadTimeout: 10 * time.Second}
		go func() { errc <- msrv.Serve(mln) }()
	}
	logger.Info("listening", "version", buildVersion().Version, "http_addr", ln.Addr().String(), "metrics_addr", metricsAddr,
		"database", db.Dialect(), "read_replicas", len(cfg.ReplicaDSNs), "redis", cfg.RedisURL != "", "redis_client_cache", be.clientCache,
		"tracing", tp != nil, "startup_ms", time.Since(start).Milliseconds())
	if onListen != nil {
		onListen(ln.Addr().String(), metricsAddr)
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Shutdown drains, then cancels what is still running and waits for it
	// to return; only then do the deferred closes of the cache, the limiter
	// and the database run, so no request meets a closed dependency.
	logger.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if msrv != nil {
		msrv.ShutdownWithContext(sctx) //nolint:errcheck // the API server's drain is the one that matters
	}
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		logger.Warn("shutdown: requests still running after SHUTDOWN_TIMEOUT were cancelled", "timeout", cfg.ShutdownTimeout.String())
	default:
		logger.Error("shutdown: closing with requests still running", "error", err)
	}
	logger.Info("stopped")
	return nil
}

// registerRuntimeMetrics registers the Go runtime's, the process's, the
// connection pools' and the build's metrics. Like every package's, they go
// through promreg: a clash with another collector stops start-up.
func registerRuntimeMetrics(reg prometheus.Registerer, db *storage.DB) error {
	cs := []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewDBStatsCollector(db.SQL(), "apiperf"), newBuildInfoMetric(buildVersion())}
	for name, pool := range db.ReplicaPools() {
		cs = append(cs, collectors.NewDBStatsCollector(pool, "apiperf-replica-"+name))
	}
	for _, c := range cs {
		if _, err := promreg.Register(reg, c); err != nil {
			return fmt.Errorf("runtime metrics: %w", err)
		}
	}
	return nil
}

// orderStore is db, behind the order pipeline unless ORDER_BATCHING is
// off. The pipeline drops a batch's products from cache once per batch.
func orderStore(db apiperf.OrderStore, c apiperf.Cache, cfg config, logger *slog.Logger, reg prometheus.Registerer) (apiperf.OrderStore, error) {
	if !cfg.OrderBatching {
		return db, nil
	}
	opts := orderpipe.Options{Lanes: cfg.OrderLanes, BatchMax: cfg.OrderBatchMax, QueueMax: cfg.OrderQueueMax, Registerer: reg}
	if c != nil {
		opts.Invalidate = func(ctx context.Context, ids []int64) {
			keys := make([]string, len(ids))
			for i, id := range ids {
				keys[i] = server.ProductCacheKey(id)
			}
			if err := c.Invalidate(ctx, keys...); err != nil {
				logger.Warn("cache invalidation failed", "product_ids", ids, "error", err)
			}
		}
	}
	pl, err := orderpipe.New(db, opts)
	if err != nil {
		return nil, fmt.Errorf("order pipeline: %w", err)
	}
	return pl, nil
}

// readinessChecks are the database, the backends' (Redis), and the read
// replicas, which only degrade readiness: without a fit replica, lists are
// read on the primary.
func readinessChecks(db *storage.DB, be *backends) []server.Check {
	checks := append([]server.Check{{Name: "database", Pinger: db}}, be.checks...)
	if r := db.Replicas(); r != nil {
		checks = append(checks, server.Check{Name: "replicas", Pinger: r, Optional: true})
	}
	return checks
}

// purgeIdempotencyRecords deletes expired idempotency records at start and
// then once an hour. The first pass runs at once because short-lived
// processes (Lambda environments, pods scaled in within the hour) would
// otherwise never purge. Expiry does not depend on it: the store ignores
// expired records.
func purgeIdempotencyRecords(ctx context.Context, db *storage.DB, logger *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := db.PurgeIdempotencyRecords(ctx); err != nil {
			if ctx.Err() == nil {
				logger.Warn("idempotency record purge failed", "error", err)
			}
		} else if n > 0 {
			logger.Info("expired idempotency records purged", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthcheck probes the local server's liveness endpoint; distroless
// images have no curl, so the binary is its own probe.
func healthcheck(httpAddr string) error {
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	status, _, err := fasthttp.GetTimeout(nil, "http://127.0.0.1:"+port+"/healthz", 3*time.Second)
	if err != nil {
		return err
	}
	if status != fasthttp.StatusOK {
		return fmt.Errorf("/healthz answered %d", status)
	}
	return nil
}
