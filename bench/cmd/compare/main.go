// Command compare measures api-perf against ceiling servers that do only the
// unavoidable work of each route (bench/ceiling/...), on 127.0.0.1:
//
//	go run ./bench/cmd/compare                      # full run, under 5 minutes
//	go run ./bench/cmd/compare -quick               # one short round at 64 connections, for CI
//	go run ./bench/cmd/compare -rounds 5 -duration 5s -conns 16,64,256
//	go run ./bench/cmd/compare -pprof               # 10 s CPU profile of the server under GET load
//	go run ./bench/cmd/compare -pprof -pprof-scenario get-uncached,order-create
//	go run ./bench/cmd/compare -scenarios list-replica   # lists on a read replica vs the primary
//
// It builds api-perf and the ceilings, creates a throw-away MySQL database
// (for the list scenarios, a private MariaDB primary with a GTID replica,
// see internal/mariadbd) and claims an empty Redis logical database, starts every process on a
// free loopback port (pinned with taskset: servers on CPU 0, the load
// generator on CPU 1), seeds products through the API, then drives each
// scenario with wrk (or a built-in fasthttp loader when wrk is missing),
// alternating ceiling and server runs for several rounds. It prints a
// Markdown table of medians and writes results.json, results.md and
// chart.svg under bench/results (bench/results/quick for -quick).
// Everything it started is stopped and dropped at the end, on error and on
// Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/api-perf/api-perf/bench"
)

type options struct {
	quick          bool
	rounds         int
	duration       time.Duration
	warmup         time.Duration
	conns          []int
	scenarios      []string
	out            string
	pin            bool
	loader         string
	dbConns        int
	readIDs        int
	orderIDs       int
	gtidSamples    int
	pprof          bool
	pprofScenarios []string
	pprofConns     int
	timeout        time.Duration
	maxErrorRate   float64
	render         string
	serverEnv      []string
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	go func() {
		// After the first signal, a second one kills the harness at once;
		// its children die with it (see bench.Start).
		<-ctx.Done()
		stop()
	}()
	err = run(ctx, o)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "one round of 2s at 64 connections (CI); overrides -rounds, -duration and -conns")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each point is the median of its rounds")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "length of one run (whole seconds for wrk)")
	conns := fs.String("conns", "16,64,256", "comma-separated connection counts")
	scen := fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ", "))
	fs.StringVar(&o.out, "out", "", "results directory (default bench/results, or bench/results/quick with -quick)")
	fs.BoolVar(&o.pin, "pin", runtime.NumCPU() >= 2, "pin servers to CPU 0 and the load generator to CPU 1 with taskset")
	fs.StringVar(&o.loader, "loader", "auto", "auto (wrk when installed), wrk or builtin")
	fs.IntVar(&o.dbConns, "db-conns", 16, "DB_MAX_OPEN_CONNS of the server and the database ceilings alike")
	fs.IntVar(&o.readIDs, "read-ids", 1000, "products the uncached read scenario rotates through")
	fs.IntVar(&o.orderIDs, "order-ids", 100, "products the order scenario rotates through (each with a huge stock)")
	fs.IntVar(&o.gtidSamples, "gtid-samples", 200, "cache fills after a write measured each way (primary, GTID wait) with the list scenarios")
	fs.BoolVar(&o.pprof, "pprof", false, "instead of comparing, take a 10s CPU profile of the server under load and print the top entries")
	pps := fs.String("pprof-scenario", "get-cached", "comma-separated scenarios to profile with -pprof")
	fs.IntVar(&o.pprofConns, "pprof-conns", 64, "connections while profiling")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "hard limit of the whole run")
	fs.Float64Var(&o.maxErrorRate, "max-error-rate", 0.01, "fail when more than this share of a run's responses are errors")
	senv := fs.String("server-env", "", "comma-separated KEY=value settings added to every api-perf server (e.g. HTTP_READ_TIMEOUT=0)")
	fs.StringVar(&o.render, "render", "", "only redraw results.md and chart.svg from DIR/results.json")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.conns, err = parseInts(*conns); err != nil {
		return o, fmt.Errorf("-conns: %w", err)
	}
	if o.quick {
		o.rounds, o.duration, o.conns = 1, 2*time.Second, []int{64}
	}
	o.warmup = time.Second
	if o.quick {
		o.warmup = 500 * time.Millisecond
	}
	if o.rounds < 1 || o.duration < time.Second {
		return o, errors.New("-rounds must be at least 1 and -duration at least 1s")
	}
	o.serverEnv = splitList(*senv)
	for _, kv := range o.serverEnv {
		if !strings.Contains(kv, "=") {
			return o, fmt.Errorf("-server-env: %q is not KEY=value", kv)
		}
	}
	o.scenarios = splitList(*scen)
	if len(o.scenarios) == 0 {
		o.scenarios = scenarioNames()
	}
	o.pprofScenarios = splitList(*pps)
	for _, n := range append(append([]string(nil), o.scenarios...), o.pprofScenarios...) {
		if findScenario(n) == nil {
			return o, fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(scenarioNames(), ", "))
		}
	}
	if o.pprof {
		o.scenarios = o.pprofScenarios
	}
	return o, nil
}

func run(ctx context.Context, o options) (err error) {
	if o.render != "" {
		return rerender(o.render)
	}
	root, err := bench.ModuleRoot()
	if err != nil {
		return err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "results")
		if o.quick {
			o.out = filepath.Join(root, "bench", "results", "quick")
		}
	}
	h := &harness{o: o, root: root, group: &bench.Group{}, procs: map[string]*bench.Process{}, pprofAddrs: map[string]string{}}
	defer func() {
		if cerr := h.group.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean-up: %w", cerr))
		}
	}()
	if err := h.prepare(ctx); err != nil {
		return err
	}
	if o.pprof {
		return h.profile(ctx)
	}
	r, err := h.compare(ctx)
	if err != nil {
		return err
	}
	writeTable(os.Stdout, r)
	for _, n := range r.Notes {
		fmt.Println("-", n)
	}
	if err := writeResults(o.out, r); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/{results.json,results.md,chart.svg}\n", o.out)
	return nil
}

// rerender rewrites a results directory's table and chart from its JSON,
// for when only the presentation changed.
func rerender(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	writeTable(os.Stdout, &r)
	return writeResults(dir, &r)
}

// chooseLoader picks wrk when asked for or installed, else the built-in one.
func chooseLoader(o options, dir string) (loader, error) {
	path, lookErr := exec.LookPath("wrk")
	switch o.loader {
	case "builtin":
		return builtinLoader{}, nil
	case "wrk":
		if lookErr != nil {
			return nil, errors.New("-loader wrk: wrk is not installed (apt-get install -y wrk)")
		}
	case "auto":
		if lookErr != nil {
			return builtinLoader{}, nil
		}
	default:
		return nil, fmt.Errorf("-loader %q: want auto, wrk or builtin", o.loader)
	}
	l := &wrkLoader{path: path, dir: dir, threads: runtime.NumCPU()}
	if o.pin {
		l.cpus, l.threads = "1", 1
	}
	return l, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", p)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
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
