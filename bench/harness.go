// Package bench holds api-perf's end-to-end benchmarks and the pieces that
// they share with the comparison harness in bench/cmd/compare: building the
// binaries, preparing a throw-away MySQL database and Redis logical
// database, starting processes on loopback ports and stopping every one of
// them, and seeding products through the API.
//
// Everything here talks to 127.0.0.1 only.
package bench

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver behind CreateDatabase
	"github.com/redis/rueidis"
)

// Default service addresses; the environment variables BENCH_MYSQL_ADDR and
// BENCH_REDIS_ADDR override them.
const (
	DefaultMySQLAddr = "127.0.0.1:3306"
	DefaultRedisAddr = "127.0.0.1:6379"
)

// ModuleRoot is the directory holding go.mod, found by walking up from the
// working directory, so the harness runs from anywhere inside the module.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find go.mod above the working directory")
		}
		dir = parent
	}
}

// Build compiles the main package pkg (a path relative to root such as
// "./cmd/api-perf") into out, with the lambda.norpc tag every release
// build uses.
func Build(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago. Another process can take it before it is used; Start reports that.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Database is a MySQL database created for one run and dropped by Drop.
type Database struct {
	Name string
	DSN  string // go-sql-driver DSN with parseTime, as api-perf expects
	db   *sql.DB
}

// CreateDatabase creates a uniquely named database on the local MariaDB or
// MySQL server. It fails loudly when the server is not reachable.
func CreateDatabase(ctx context.Context, prefix string) (*Database, error) {
	addr := envOr("BENCH_MYSQL_ADDR", DefaultMySQLAddr)
	admin, err := sql.Open("mysql", "root@tcp("+addr+")/")
	if err != nil {
		return nil, err
	}
	admin.SetMaxOpenConns(1)
	name := fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1_000_000_000)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		admin.Close()
		return nil, fmt.Errorf("create database %s on %s (is MariaDB running?): %w", name, addr, err)
	}
	return &Database{Name: name, DSN: "root@tcp(" + addr + ")/" + name + "?parseTime=true", db: admin}, nil
}

// Drop removes the database and closes the admin connection.
func (d *Database) Drop() error {
	if d == nil || d.db == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+d.Name+"`")
	d.db.Close()
	d.db = nil
	return err
}

// SetStock sets products' stock in the database itself. The order
// scenarios' ceiling (ordertx) writes stock behind api-perf's cache, so the
// API's If-Match, read from a cached body, may never match; nothing reads
// these products' bodies, so a stale cached stock does not matter.
func (d *Database) SetStock(ctx context.Context, stock int64, ids ...int64) error {
	for _, id := range ids {
		if _, err := d.db.ExecContext(ctx, "UPDATE `"+d.Name+"`.products SET stock = ?, version = version + 1 WHERE id = ?", stock, id); err != nil {
			return fmt.Errorf("set the stock of product %d: %w", id, err)
		}
	}
	return nil
}

// ServerVersion is the database server's version string, for reports.
func (d *Database) ServerVersion(ctx context.Context) string {
	var v string
	if d == nil || d.db == nil || d.db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v) != nil {
		return "unknown"
	}
	return v
}

// RedisDB is a Redis logical database that was empty when the run chose
// it, so the server's fixed key prefixes (apiperf:c:, apiperf:rl:) cannot
// meet keys of other programs using database 0.
type RedisDB struct {
	Index int
	URL   string // REDIS_URL for api-perf
	c     rueidis.Client
}

// claimKey marks a logical database as taken by a run. It starts with
// "apiperf:" so that Release removes it with the server's keys.
const claimKey = "apiperf:bench:claim"

// ClaimRedisDB picks the highest-numbered empty logical database. It fails
// loudly when Redis is not reachable or every database holds keys.
func ClaimRedisDB(ctx context.Context) (*RedisDB, error) {
	addr := envOr("BENCH_REDIS_ADDR", DefaultRedisAddr)
	for i := 15; i >= 1; i-- {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, SelectDB: i,
			DisableCache: true, DisableRetry: true})
		if err != nil {
			return nil, fmt.Errorf("connect to Redis at %s (is it running?): %w", addr, err)
		}
		n, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64()
		if err != nil {
			c.Close()
			if strings.Contains(err.Error(), "out of range") {
				continue
			}
			return nil, fmt.Errorf("redis DBSIZE on db %d: %w", i, err)
		}
		if n == 0 {
			// Two runs may see the same empty database; the claim key,
			// set only if absent, decides which one takes it.
			ok, err := c.Do(ctx, c.B().Set().Key(claimKey).Value(strconv.Itoa(os.Getpid())).Nx().Ex(6*time.Hour).Build()).AsBool()
			if err == nil && ok {
				return &RedisDB{Index: i, URL: fmt.Sprintf("redis://%s/%d", addr, i), c: c}, nil
			}
		}
		c.Close()
	}
	return nil, errors.New("no empty Redis logical database among 1..15")
}

// Release deletes the keys api-perf wrote (its apiperf: prefix) and closes
// the connection. It does not flush the database: only what the server
// names as its own is removed.
func (r *RedisDB) Release() error {
	if r == nil || r.c == nil {
		return nil
	}
	defer func() { r.c.Close(); r.c = nil }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := r.c.Do(ctx, r.c.B().Scan().Cursor(cursor).Match("apiperf:*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		if len(e.Elements) > 0 {
			if err := r.c.Do(ctx, r.c.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				return err
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// ProcessOptions describe one process to start.
type ProcessOptions struct {
	Name   string   // for messages
	Binary string   // path of the executable
	Args   []string // arguments after the binary
	Env    []string // KEY=value pairs added to a minimal environment
	Addr   string   // the HTTP address the process serves on
	// CPUs pins the process with taskset (for example "0"); empty leaves
	// it to the scheduler.
	CPUs string
	// ReadyPath is polled with GET until it answers 200; default /healthz.
	ReadyPath string
	// AnyStatus counts any HTTP answer as ready, for servers without a
	// health route.
	AnyStatus bool
}

// Process is a started child process. Its output is kept in memory and
// shown when it fails to start.
type Process struct {
	Name string
	Addr string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// Start runs the process and waits until its ReadyPath answers 200, at most
// 30 seconds. The child is in its own process group and, on Linux, is
// killed by the kernel if the harness dies first.
func Start(ctx context.Context, o ProcessOptions) (*Process, error) {
	name, args := o.Binary, o.Args
	if o.CPUs != "" {
		name, args = "taskset", append([]string{"-c", o.CPUs, o.Binary}, o.Args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(baseEnv(), o.Env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Name, err)
	}
	p := &Process{Name: o.Name, Addr: o.Addr, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	path := o.ReadyPath
	if path == "" {
		path = "/healthz"
	}
	if err := p.waitReady(ctx, path, o.AnyStatus, 30*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%s did not become ready: %w\n%s", o.Name, err, p.Output())
	}
	return p, nil
}

func (p *Process) waitReady(ctx context.Context, path string, anyStatus bool, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if status, _, err := Get(p.Addr, path); err == nil && (status == 200 || anyStatus) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no 200 from %s within %v", path, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM to the process group, waits up to 10 seconds for a
// drain, then kills it. It is safe to call more than once.
func (p *Process) Stop() error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	signalGroup(p.cmd, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		signalGroup(p.cmd, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for 10s and was killed", p.Name)
	}
}

// Output is what the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// CPUTime is the CPU time (user and system) the process has used so far.
// Sampled around a run, it gives the CPU cost per request, which other
// programs on the machine disturb far less than throughput.
func (p *Process) CPUTime() (time.Duration, error) { return cpuTime(p.cmd.Process.Pid) }

// PID is the operating-system id of the process.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Group tracks every process and resource a run starts so that one call,
// deferred or from a signal handler, releases all of them in reverse order.
type Group struct {
	mu      sync.Mutex
	closers []func() error
	closed  bool
}

// Add registers a release function.
func (g *Group) Add(f func() error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closers = append(g.closers, f)
}

// Close releases everything once; later calls do nothing.
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	cs := g.closers
	g.closers = nil
	g.mu.Unlock()
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// baseEnv is the part of the harness's environment a child needs (PATH,
// HOME, Go's settings): api-perf's own variables are never inherited, so a
// stray RATE_LIMIT_READ in the shell cannot change what is measured.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "HOME", k == "TMPDIR", k == "GOGC", k == "GOMEMLIMIT", k == "GODEBUG":
			env = append(env, kv)
		}
	}
	return env
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// lockedBuffer is a bytes.Buffer safe for the child's stdout and stderr
// writers and a concurrent reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the head: start-up errors are there
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
