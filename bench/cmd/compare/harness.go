package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/api-perf/api-perf/bench"
	"github.com/api-perf/api-perf/internal/mariadbd"
)

// harness owns everything a run starts.
type harness struct {
	o              options
	root           string
	group          *bench.Group
	tmp            string
	bins           map[string]string
	db             *bench.Database
	redis          *bench.RedisDB
	loader         loader
	procs          map[string]*bench.Process
	fix            fixture
	static         string // the hot product's body, served by the static ceiling
	notes          []string
	hasCacheSwitch bool
	pprofAddrs     map[string]string // PPROF_ADDR of each api-perf instance, with -pprof
	// pair is the private MariaDB primary and replica of the list
	// scenarios, and pairDB their database.
	pair   *mariadbd.Pair
	pairDB string
	fill   *bench.FillCost
}

// serverCPUs is where servers and ceilings run when pinning.
func (h *harness) serverCPUs() string {
	if h.o.pin {
		return "0"
	}
	return ""
}

// prepare builds the binaries, creates the database and the Redis logical
// database, starts the api-perf instance the seeding goes through, and
// seeds.
func (h *harness) prepare(ctx context.Context) error {
	if h.o.pin {
		if _, err := exec.LookPath("taskset"); err != nil {
			h.o.pin = false
			h.note("taskset is not installed: nothing is pinned")
		}
	}
	tmp, err := os.MkdirTemp("", "api-perf-compare-")
	if err != nil {
		return err
	}
	h.tmp = tmp
	h.group.Add(func() error { return os.RemoveAll(tmp) })
	if h.loader, err = chooseLoader(h.o, tmp); err != nil {
		return err
	}

	need := map[string]bool{"api-perf": true}
	for _, n := range h.o.scenarios {
		s := findScenario(n)
		need[s.Server] = true
		if s.Ceiling != "" && !h.o.pprof {
			need[s.Ceiling] = true
		}
	}
	h.bins = map[string]string{"api-perf": filepath.Join(tmp, "api-perf")}
	builds := [][2]string{{"api-perf", "./cmd/api-perf"}}
	for _, c := range []string{"static", "fixedbody", "selectbyid", "ordertx"} {
		if need[c] {
			h.bins[c] = filepath.Join(tmp, c)
			builds = append(builds, [2]string{c, "./bench/ceiling/" + c})
		}
	}
	start := time.Now()
	for _, b := range builds {
		if err := bench.Build(ctx, h.root, b[1], h.bins[b[0]]); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "built %d binaries in %v\n", len(builds), time.Since(start).Round(time.Millisecond))

	if h.db, err = bench.CreateDatabase(ctx, "apiperf_bench"); err != nil {
		return err
	}
	h.group.Add(h.db.Drop)
	if h.redis, err = bench.ClaimRedisDB(ctx); err != nil {
		return err
	}
	h.group.Add(h.redis.Release)
	if err := bench.Migrate(ctx, h.bins["api-perf"], h.db.DSN); err != nil {
		return err
	}
	h.hasCacheSwitch = bench.SupportsSetting(ctx, h.bins["api-perf"], "CACHE")
	if !h.hasCacheSwitch {
		h.note("the server has no CACHE=off switch: get-uncached runs with CACHE_TTL=1ms over rotating ids, so nearly every read misses but still pays the cache's bookkeeping")
	}

	if _, err := h.start(ctx, "api-perf"); err != nil {
		return err
	}
	if err := h.seed(ctx, need); err != nil {
		return err
	}
	for _, name := range []string{"api-perf-limiter", "api-perf-crowd", "api-perf-nocache", "api-perf-embedded", "static", "fixedbody", "selectbyid", "ordertx"} {
		if need[name] {
			if _, err := h.start(ctx, name); err != nil {
				return err
			}
		}
	}
	if need["api-perf-pair"] || need["api-perf-replica"] {
		return h.preparePair(ctx)
	}
	return nil
}

// preparePair starts a private MariaDB primary with a GTID replica, migrates
// and seeds a database on it through an api-perf reading everything from the
// primary, starts a second one reading lists from the replica, and
// measures what a GTID wait adds to a cache fill after a write.
func (h *harness) preparePair(ctx context.Context) error {
	start := time.Now()
	pair, err := mariadbd.StartPair(ctx)
	if err != nil {
		return fmt.Errorf("the list scenarios need a MariaDB primary and replica: %w", err)
	}
	h.pair = pair
	h.group.Add(func() error { pair.Close(); return nil })
	h.pairDB = "apiperf_bench_pair"
	if err := pair.CreateDatabase(ctx, h.pairDB); err != nil {
		return err
	}
	if err := bench.Migrate(ctx, h.bins["api-perf"], pair.Primary.DSN(h.pairDB)); err != nil {
		return err
	}
	p, err := h.start(ctx, "api-perf-pair")
	if err != nil {
		return err
	}
	ids, err := bench.SeedProducts(p.Addr, "list", listProducts, 1_000)
	if err != nil {
		return err
	}
	h.fix.listPaths = listPages(ids)
	if err := pair.WaitReplicated(ctx, 30*time.Second); err != nil {
		return err
	}
	r, err := h.start(ctx, "api-perf-replica")
	if err != nil {
		return err
	}
	if err := waitReplicaReady(ctx, r.Addr); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "started a MariaDB primary and replica, seeded %d products, in %v\n", listProducts,
		time.Since(start).Round(time.Millisecond))

	n := h.o.gtidSamples
	if h.o.quick {
		n = min(n, 50)
	}
	fill, err := bench.MeasureFillAfterWrite(ctx, pair.Primary.DSN(h.pairDB), pair.Replica.DSN(h.pairDB), ids[0], n)
	if err != nil {
		return fmt.Errorf("measure the cache fill after a write: %w", err)
	}
	h.fill = &fill
	fmt.Fprintf(os.Stderr, "cache fill after a write, %d each: primary p50 %s p99 %s; GTID wait + replica p50 %s p99 %s (wait alone p50 %s); added %s on average\n",
		n, fmtDur(fill.Primary.P50), fmtDur(fill.Primary.P99), fmtDur(fill.GTIDWait.P50), fmtDur(fill.GTIDWait.P99),
		fmtDur(fill.Wait.P50), fmtDur(fill.Added))
	return nil
}

// waitReplicaReady waits until an api-perf's /readyz reports its replica
// fit for list reads, so that the list-replica runs measure the replica.
func waitReplicaReady(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body, err := bench.Get(addr, "/readyz")
		if err == nil && status == http.StatusOK && strings.Contains(string(body), `"replicas":"ok"`) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("api-perf-replica: /readyz says %d %s (%v) after 30s, want the replicas ok", status, body, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// seed creates the products through the API.
func (h *harness) seed(ctx context.Context, need map[string]bool) error {
	api := h.procs["api-perf"].Addr
	start := time.Now()
	ids, err := bench.SeedProducts(api, "hot", 1, 1_000_000)
	if err != nil {
		return err
	}
	h.fix.hotID = ids[0]
	if need["api-perf-nocache"] {
		n := h.o.readIDs
		if h.o.quick {
			n = min(n, 200)
		}
		if h.fix.readIDs, err = bench.SeedProducts(api, "read", n, 1_000); err != nil {
			return err
		}
	}
	if slices.Contains(h.o.scenarios, "order-create") {
		n := h.o.orderIDs
		if h.o.quick {
			n = min(n, 20)
		}
		if h.fix.orderIDs, err = bench.SeedProducts(api, "order", n, orderStock); err != nil {
			return err
		}
	}
	if slices.Contains(h.o.scenarios, "order-hot") {
		if ids, err = bench.SeedProducts(api, "hot-order", 1, orderStock); err != nil {
			return err
		}
		h.fix.hotOrderID = ids[0]
	}
	status, body, err := bench.Get(api, "/products/"+strconv.FormatInt(h.fix.hotID, 10))
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("read back the hot product: status %d, %v", status, err)
	}
	h.static = string(body)
	if need["api-perf-embedded"] {
		p, err := h.start(ctx, "api-perf-embedded")
		if err != nil {
			return err
		}
		if ids, err = bench.SeedProducts(p.Addr, "hot", 1, 1_000_000); err != nil {
			return err
		}
		h.fix.embeddedHotID = ids[0]
	}
	fmt.Fprintf(os.Stderr, "seeded %d products in %v\n", 1+len(h.fix.readIDs)+len(h.fix.orderIDs),
		time.Since(start).Round(time.Millisecond))
	return nil
}

// orderStock is the stock of the order products: more than any run can sell.
const orderStock = 1_000_000_000

// start launches a target by name once and remembers it.
func (h *harness) start(ctx context.Context, name string) (*bench.Process, error) {
	if p := h.procs[name]; p != nil {
		return p, nil
	}
	addr, err := bench.FreeAddr()
	if err != nil {
		return nil, err
	}
	sc := bench.ServerConfig{Binary: h.bins["api-perf"], Addr: addr, MySQLDSN: h.db.DSN, RedisURL: h.redis.URL,
		DBMaxOpenConns: h.o.dbConns, CPUs: h.serverCPUs(), Extra: h.o.serverEnv}
	if h.o.pprof {
		if sc.PprofAddr, err = bench.FreeAddr(); err != nil {
			return nil, err
		}
	}
	var p *bench.Process
	switch name {
	case "api-perf":
		p, err = bench.StartServer(ctx, name, sc)
	case "api-perf-limiter":
		sc.ReadLimit, sc.WriteLimit = bench.HugeLimit, bench.HugeLimit
		sc.Extra = append(slices.Clone(sc.Extra), limiterTimeout)
		p, err = bench.StartServer(ctx, name, sc)
	case "api-perf-crowd":
		sc.ReadLimit, sc.WriteLimit = crowdLimit, crowdLimit
		sc.Extra = append(slices.Clone(sc.Extra), "TRUSTED_PROXIES=127.0.0.1", limiterTimeout)
		p, err = bench.StartServer(ctx, name, sc)
	case "api-perf-nocache":
		if h.hasCacheSwitch {
			sc.CacheOff = true
		} else {
			sc.CacheTTL = "1ms"
		}
		p, err = bench.StartServer(ctx, name, sc)
	case "api-perf-embedded":
		sc.MySQLDSN, sc.RedisURL, sc.DBMaxOpenConns = "", "", 0
		sc.DataDir = filepath.Join(h.tmp, "data")
		p, err = bench.StartServer(ctx, name, sc)
	case "api-perf-pair", "api-perf-replica":
		// Its own key prefix: the pair's product ids are the other
		// database's too.
		sc.MySQLDSN = h.pair.Primary.DSN(h.pairDB)
		sc.Extra = append(slices.Clone(sc.Extra), "REDIS_KEY_PREFIX=apiperf:pair:")
		if name == "api-perf-replica" {
			sc.Extra = append(sc.Extra, "MYSQL_READ_DSN="+h.pair.Replica.DSN(h.pairDB))
		}
		p, err = bench.StartServer(ctx, name, sc)
	case "static", "fixedbody", "selectbyid", "ordertx":
		env := []string{"HTTP_ADDR=" + addr, "MYSQL_DSN=" + h.db.DSN, "DB_MAX_OPEN_CONNS=" + strconv.Itoa(h.o.dbConns)}
		switch name {
		case "static":
			env = append(env, "STATIC_BODY="+h.static)
		case "fixedbody":
			// The same server, so the same server settings.
			env = append(append(env, "STATIC_BODY="+h.static), h.o.serverEnv...)
		}
		// The ceilings have no health route; any answer means they listen.
		p, err = bench.Start(ctx, bench.ProcessOptions{Name: name, Binary: h.bins[name], Env: env, Addr: addr,
			CPUs: h.serverCPUs(), ReadyPath: "/", AnyStatus: true})
	default:
		return nil, fmt.Errorf("unknown target %q", name)
	}
	if err != nil {
		return nil, err
	}
	h.group.Add(p.Stop)
	h.procs[name] = p
	if sc.PprofAddr != "" && strings.HasPrefix(name, "api-perf") {
		h.pprofAddrs[name] = sc.PprofAddr
	}
	return p, nil
}

// compare runs every selected scenario for every round and connection
// count, alternating which of the pair goes first from round to round.
func (h *harness) compare(ctx context.Context) (*report, error) {
	o := h.o
	r := &report{Started: time.Now().UTC(), Command: "go run ./bench/cmd/compare " + strings.Join(os.Args[1:], " "),
		Machine: machine(ctx, h), Loader: h.loader.Name(), Rounds: o.rounds, Duration: o.duration.String()}
	r.Command = strings.TrimSpace(r.Command)
	r.Pinning = "none"
	if o.pin {
		r.Pinning = "servers and ceilings on CPU 0, load generator on CPU 1 (taskset); MariaDB and Redis unpinned"
	}
	var cells []*cell
	for _, name := range o.scenarios {
		s := findScenario(name)
		for _, c := range o.conns {
			cl := &cell{Scenario: s.Name, Conns: c, Target: s.Target, Server: series{Target: s.Server}}
			if s.Ceiling != "" {
				cl.Ceiling = &series{Target: s.Ceiling}
			}
			cells = append(cells, cl)
		}
	}
	runs := 0
	for _, cl := range cells {
		runs += o.rounds
		if cl.Ceiling != nil {
			runs += o.rounds
		}
	}
	fmt.Fprintf(os.Stderr, "%d runs of %v each (about %v)\n", runs, o.duration, (time.Duration(runs) * (o.duration + 400*time.Millisecond)).Round(time.Second))

	// Warm every target once per scenario: caches filled, pools opened,
	// the Go runtime's heap grown.
	for _, name := range o.scenarios {
		s := findScenario(name)
		for _, t := range []string{s.Ceiling, s.Server} {
			if t == "" {
				continue
			}
			if _, err := h.loader.Run(ctx, h.procs[t].Addr, s.Load(&h.fix), 64, o.warmup); err != nil {
				return nil, fmt.Errorf("warm-up of %s on %s: %w", s.Name, t, err)
			}
		}
	}

	for round := range o.rounds {
		for _, name := range o.scenarios {
			s := findScenario(name)
			if s.Restock {
				if err := h.db.SetStock(ctx, orderStock, h.fix.orderProducts()...); err != nil {
					return nil, fmt.Errorf("restock: %w", err)
				}
			}
		}
		for _, cl := range cells {
			s := findScenario(cl.Scenario)
			pair := []*series{cl.Ceiling, &cl.Server}
			if round%2 == 1 {
				pair[0], pair[1] = pair[1], pair[0]
			}
			for _, se := range pair {
				if se == nil {
					continue
				}
				m, err := h.measure(ctx, se.Target, s.Load(&h.fix), cl.Conns)
				if err != nil {
					return nil, fmt.Errorf("%s on %s at %d connections: %w", s.Name, se.Target, cl.Conns, err)
				}
				se.Runs = append(se.Runs, m)
				extra := ""
				if m.MeanBatch > 0 {
					extra = fmt.Sprintf("  batch %.1f", m.MeanBatch)
				}
				if m.RedisCallsPerReq > 0 {
					extra += fmt.Sprintf("  redis calls/req %.3f", m.RedisCallsPerReq)
				}
				fmt.Fprintf(os.Stderr, "round %d  %-18s %-18s c=%-4d %9.0f req/s  p50 %-10s p99 %-10s cpu/req %-9s errors %d%s\n",
					round+1, s.Name, se.Target, cl.Conns, m.RPS, fmtDur(m.P50), fmtDur(m.P99), fmtMicros(m.CPUPerReq), m.Errors, extra)
			}
		}
	}
	r.Machine["loadavg_at_end"] = loadAvg()
	for _, cl := range cells {
		cl.finish()
		r.Cells = append(r.Cells, *cl)
	}
	r.Notes = h.notes
	if h.fill != nil {
		f := h.fill
		r.FillAfterWrite = f
		r.Notes = append(r.Notes, fmt.Sprintf("cache fill right after a write, %d samples each, MariaDB primary and replica on this machine: "+
			"one SELECT on the primary p50 %s, p99 %s, mean %s; primary position (SELECT @@gtid_binlog_pos) + MASTER_GTID_WAIT on the replica + the SELECT there "+
			"p50 %s, p99 %s, mean %s (the position and the wait alone: p50 %s, p99 %s); a GTID wait adds %s per fill on average",
			f.Samples, fmtDur(f.Primary.P50), fmtDur(f.Primary.P99), fmtDur(f.Primary.Mean),
			fmtDur(f.GTIDWait.P50), fmtDur(f.GTIDWait.P99), fmtDur(f.GTIDWait.Mean), fmtDur(f.Wait.P50), fmtDur(f.Wait.P99), fmtDur(f.Added)))
	}
	for _, name := range o.scenarios {
		s := findScenario(name)
		r.Notes = append(r.Notes, s.Name+": "+s.About)
	}
	return r, nil
}

// measure runs one load and checks its error rate.
func (h *harness) measure(ctx context.Context, target string, w workload, conns int) (measurement, error) {
	p := h.procs[target]
	if p.Exited() {
		return measurement{}, fmt.Errorf("%s has exited:\n%s", target, p.Output())
	}
	time.Sleep(250 * time.Millisecond) // let the previous run's sockets close
	batches0, orders0, berr0 := batchSizes(p.Addr, strings.HasPrefix(target, "api-perf") && w.Method == http.MethodPost)
	cpu0, cerr0 := p.CPUTime()
	calls0, callsErr0 := redisCalls(target, p.Addr)
	m, err := h.loader.Run(ctx, p.Addr, w, conns, h.o.duration)
	if err != nil {
		return m, err
	}
	if batches1, orders1, berr1 := batchSizes(p.Addr, berr0 == nil); berr0 == nil && berr1 == nil && batches1 > batches0 {
		m.MeanBatch = (orders1 - orders0) / (batches1 - batches0)
	}
	if cpu1, cerr1 := p.CPUTime(); cerr0 == nil && cerr1 == nil && m.Requests > 0 {
		m.CPUPerReq = (cpu1 - cpu0) / time.Duration(m.Requests)
	}
	if calls1, callsErr1 := redisCalls(target, p.Addr); callsErr0 == nil && callsErr1 == nil && m.Requests > 0 {
		m.RedisCallsPerReq = (calls1 - calls0) / float64(m.Requests)
	}
	if m.Requests == 0 || float64(m.Errors) > h.o.maxErrorRate*float64(m.Requests) {
		return m, fmt.Errorf("%d of %d responses were errors (want status %d)", m.Errors, m.Requests, w.OK)
	}
	return m, nil
}

// batchSizes reads the order pipeline's batch-size histogram (its count
// of batches and sum of orders) from an api-perf server's /metrics; want
// false skips the read (an error).
func batchSizes(addr string, want bool) (batches, orders float64, err error) {
	if !want {
		return 0, 0, errors.New("not an order run of api-perf")
	}
	status, body, err := bench.Get(addr, "/metrics")
	if err != nil || status != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /metrics: %d %v", status, err)
	}
	found := 0
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case "apiperf_order_batch_size_count":
			batches, err = strconv.ParseFloat(value, 64)
			found++
		case "apiperf_order_batch_size_sum":
			orders, err = strconv.ParseFloat(value, 64)
			found++
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if found != 2 {
		return 0, 0, errors.New("no apiperf_order_batch_size (ORDER_BATCHING=off?)")
	}
	return batches, orders, nil
}

// limiterTimeout gives the limiter's Redis calls a deadline that a busy
// shared machine does not miss: the limiter scenarios measure decisions
// made by Redis, not by the in-process fallback (whose share is reported).
const limiterTimeout = "REDIS_TIMEOUT=100ms"

// redisCallsMetric counts the rate limiter's round trips to Redis.
const redisCallsMetric = "apiperf_ratelimit_redis_calls_total"

// redisCalls reads the rate limiter's Redis round trips so far from an
// api-perf target's /metrics; other targets, and servers without the
// counter, give an error.
func redisCalls(target, addr string) (float64, error) {
	if !strings.HasPrefix(target, "api-perf") {
		return 0, errors.New("not an api-perf target")
	}
	status, body, err := bench.Get(addr, "/metrics")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %d", status)
	}
	return sumMetric(body, redisCallsMetric)
}

// sumMetric adds up every sample of the named metric in a Prometheus
// text exposition.
func sumMetric(body []byte, name string) (float64, error) {
	var sum float64
	found := false
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("no %s in /metrics", name)
	}
	return sum, nil
}

// profile takes a CPU profile of each selected scenario's server while the
// scenario's load runs, then prints pprof's top entries.
func (h *harness) profile(ctx context.Context) error {
	if err := os.MkdirAll(h.o.out, 0o755); err != nil {
		return err
	}
	for _, name := range h.o.scenarios {
		s := findScenario(name)
		p := h.procs[s.Server]
		if s.Restock {
			if err := h.db.SetStock(ctx, orderStock, h.fix.orderProducts()...); err != nil {
				return err
			}
		}
		pprofAddr := h.pprofAddrs[s.Server]
		if status, _, err := bench.Get(pprofAddr, "/debug/pprof/"); pprofAddr == "" || err != nil || status != http.StatusOK {
			return fmt.Errorf("%s: no PPROF_ADDR listener found; the server needs PPROF_ADDR support for -pprof", s.Server)
		}
		file := filepath.Join(h.o.out, "cpu-"+s.Name+".pprof")
		done := make(chan error, 1)
		go func() {
			_, err := h.loader.Run(ctx, p.Addr, s.Load(&h.fix), h.o.pprofConns, 12*time.Second)
			done <- err
		}()
		time.Sleep(time.Second) // profile the steady state, not the ramp
		perr := fetchProfile(ctx, "http://"+pprofAddr+"/debug/pprof/profile?seconds=10", file)
		if err := <-done; err != nil {
			return fmt.Errorf("load while profiling %s: %w", s.Name, err)
		}
		if perr != nil {
			return perr
		}
		out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", h.bins["api-perf"], file).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %v\n%s", err, out)
		}
		txt := filepath.Join(h.o.out, "cpu-"+s.Name+".txt")
		if err := os.WriteFile(txt, out, 0o644); err != nil {
			return err
		}
		fmt.Printf("== CPU profile of %s under %s at %d connections (%s)\n", s.Server, s.Name, h.o.pprofConns, file)
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for i := 0; sc.Scan() && i < 32; i++ {
			fmt.Println(sc.Text())
		}
		fmt.Println()
	}
	return nil
}

func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("profile: %s: %s", resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (h *harness) note(s string) {
	h.notes = append(h.notes, s)
	fmt.Fprintln(os.Stderr, "note:", s)
}

// machine describes the host for the report.
func machine(ctx context.Context, h *harness) map[string]string {
	m := map[string]string{"nproc": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(),
		"os": runtime.GOOS + "/" + runtime.GOARCH, "database": h.db.ServerVersion(ctx), "cpu": "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	m["loadavg_at_start"] = loadAvg()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// loadAvg is the 1, 5 and 15 minute load averages: on a shared two-core
// machine a high value at the start explains noisy numbers.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
