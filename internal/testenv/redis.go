package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/procsignal"
)

// RedisServer is a redis-server child process owned by one test, on a
// loopback port of its own, for tests that kill, freeze or restart Redis
// or build a Redis Cluster. Its log goes to a file in the test's temporary
// directory.
type RedisServer struct {
	tb   testing.TB
	port int
	args []string
	dir  string
	cmd  *exec.Cmd
}

// StartRedis runs redis-server with persistence off and the given extra
// configuration arguments, waits until it answers PING, and kills it when
// the test ends. It fails the test when redis-server is not installed.
func StartRedis(tb testing.TB, extra ...string) *RedisServer {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s is required for this test (apt-get install redis-server): %v", bin, err)
		}
	}
	s := &RedisServer{tb: tb, port: freeRedisPort(tb), dir: tb.TempDir()}
	s.args = append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", s.dir}, extra...)
	s.Start()
	tb.Cleanup(s.Kill)
	return s
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's port.
func (s *RedisServer) Port() int { return s.port }

// Start runs the server (again, on the same port) and waits until it
// answers PING.
func (s *RedisServer) Start() {
	s.tb.Helper()
	logf, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.tb.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command("redis-server", s.args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server on port %d: %v", s.port, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("redis-cli", "-p", strconv.Itoa(s.port), "ping").Output()
		if err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return
		}
		if time.Now().After(deadline) {
			s.Kill()
			s.tb.Fatalf("redis-server on port %d did not answer PING within 10s (log in %s)", s.port, s.dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL: a crash, not a shutdown) and
// reaps it. It does nothing when the server is not running.
func (s *RedisServer) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Signal sends sig to the running server (SIGSTOP freezes it, SIGCONT
// thaws it).
func (s *RedisServer) Signal(sig os.Signal) error {
	if s.cmd == nil {
		return fmt.Errorf("redis-server on port %d is not running", s.port)
	}
	return procsignal.Signal(s.cmd.Process, sig)
}

// StartRedisCluster builds a three-master Redis Cluster on loopback ports
// with redis-cli --cluster create and returns its nodes' addresses once
// every node reports cluster_state:ok. It fails the test, rather than skip
// it, when the cluster cannot be built here.
func StartRedisCluster(tb testing.TB) []string {
	tb.Helper()
	var addrs []string
	for range 3 {
		dir := tb.TempDir()
		s := StartRedis(tb, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "5000")
		addrs = append(addrs, s.Addr())
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
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

// freeRedisPort returns a loopback port nobody listens on whose Redis
// Cluster bus port (port+10000) is free too.
func freeRedisPort(tb testing.TB) int {
	tb.Helper()
	for range 200 {
		port := 20000 + rand.IntN(9000)
		if portFree(port) && portFree(port+10000) {
			return port
		}
	}
	tb.Fatal("no free loopback port found for redis-server")
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
