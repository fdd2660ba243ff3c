package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"
)

// redisAddr is the shared Redis the tests expect on this machine.
const redisAddr = "127.0.0.1:6379"

// verifyNoLeaks checks, after every cleanup of the test has run (the first
// registered cleanup runs last), that the test left no goroutine behind.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	// A rueidis cluster client closes connections dropped from the slot map
	// five seconds later in a goroutine of its own, even after Close; it
	// ends by itself and holds nothing of ours.
	rueidisDelayedClose := goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2")
	t.Cleanup(func() { goleak.VerifyNone(t, ignore, rueidisDelayedClose) })
}

// MustClient returns a rueidis client for addrs, closed at the end of the
// test. Client-side caching is off: the limiter never reads through it.
func MustClient(tb testing.TB, addrs ...string) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  addrs,
		DisableCache: true,
	})
	if err != nil {
		tb.Fatalf("connecting to Redis at %v (the tests need a real Redis): %v", addrs, err)
	}
	tb.Cleanup(c.Close)
	return c
}

var prefixSeq atomic.Int64

// MustPrefix returns a key prefix unique to this test run and deletes every
// key under it when the test ends.
func MustPrefix(tb testing.TB, c rueidis.Client) string {
	tb.Helper()
	prefix := fmt.Sprintf("apiperf:test:%d:%d:", time.Now().UnixNano(), prefixSeq.Add(1))
	tb.Cleanup(func() { deleteKeys(tb, c, prefix) })
	return prefix
}

// deleteKeys removes every key starting with prefix, on every node.
func deleteKeys(tb testing.TB, c rueidis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range c.Nodes() {
		var cursor uint64
		for {
			e, err := n.Do(ctx, n.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				break // a node that is already gone holds nothing to clean
			}
			for _, k := range e.Elements {
				n.Do(ctx, n.B().Del().Key(k).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
}

// redisServer is a redis-server child process owned by one test.
type redisServer struct {
	tb   testing.TB
	port int
	args []string
	cmd  *exec.Cmd
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// StartRedis runs redis-server on 127.0.0.1:port with persistence off, waits
// until it answers, and stops it when the test ends.
func StartRedis(tb testing.TB, port int, extra ...string) *redisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("redis-server is needed to test failures and Redis Cluster (apt-get install redis-server): %v", err)
	}
	s := &redisServer{tb: tb, port: port}
	s.args = append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", tb.TempDir(), "--logfile", "",
	}, extra...)
	s.start()
	tb.Cleanup(s.stop)
	return s
}

func (s *redisServer) start() {
	s.tb.Helper()
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("starting redis-server on port %d: %v", s.port, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(s.port), "ping").Output(); err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return
		}
		if time.Now().After(deadline) {
			s.stop()
			s.tb.Fatalf("redis-server on port %d did not answer PING within 10s", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server (SIGKILL: a crash, not a shutdown) and reaps it.
func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// FreePort returns a loopback port nobody listens on. With bus set, port+10000
// (the Redis Cluster bus) is free too.
func FreePort(tb testing.TB, bus bool) int {
	tb.Helper()
	for range 200 {
		port := 20000 + rand.IntN(9000)
		if !portFree(port) || (bus && !portFree(port+10000)) {
			continue
		}
		return port
	}
	tb.Fatal("no free loopback port found")
	return 0
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// StartCluster starts a three-master Redis Cluster on loopback ports and
// returns the addresses of its nodes. It fails the test, rather than skip
// it, when the cluster cannot be built here.
func StartCluster(tb testing.TB) []string {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		tb.Fatalf("redis-cli is needed to create the test cluster (apt-get install redis-tools): %v", err)
	}
	var addrs []string
	for range 3 {
		port := FreePort(tb, true)
		dir := tb.TempDir()
		s := StartRedis(tb, port, "--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf", "--cluster-node-timeout", "5000")
		addrs = append(addrs, s.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		_, port, _ := strings.Cut(a, ":")
		for {
			out, _ := exec.Command("redis-cli", "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("cluster node %s not ok after 20s:\n%s", a, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}
