package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHAProxy puts a real HAProxy with `option forwardfor` in front of the
// binary, trusts it, and checks that the rate limit follows the real
// clients (two loopback source addresses) whatever X-Forwarded-For lines
// they forge: HAProxy appends its own line, after theirs.
func TestHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (make tools installs it)")
	}
	base := startReplica(t, map[string]string{
		"DATA_DIR":        t.TempDir(),
		"LOG_LEVEL":       "error",
		"TRUSTED_PROXIES": "127.0.0.1",
		"RATE_LIMIT_READ": "3/1m,burst=3",
	}, nil)
	front := startHAProxy(t, bin, strings.TrimPrefix(base, "http://"))

	get := func(src string, xff ...string) int {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
		req, _ := http.NewRequest("GET", "http://"+front+"/products", nil)
		if len(xff) > 0 {
			req.Header["X-Forwarded-For"] = xff
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		io.Copy(io.Discard, res.Body) //nolint:errcheck
		return res.StatusCode
	}
	for _, client := range []string{"127.0.0.2", "127.0.0.4"} {
		got := map[int]int{}
		for i := range 9 {
			var xff []string
			switch i % 3 {
			case 1:
				xff = []string{fmt.Sprintf("203.0.113.%d", i)}
			case 2:
				xff = []string{fmt.Sprintf("203.0.113.%d, 198.51.100.%d", i, i), "garbage"}
			}
			got[get(client, xff...)]++
		}
		if got[200] != 3 || got[429] != 6 {
			t.Fatalf("client %s through HAProxy: %v, want 3 × 200 and 6 × 429", client, got)
		}
	}
}

// startHAProxy runs haproxy in the foreground on a free loopback port in
// front of backend until the test ends, and returns its address.
func startHAProxy(t *testing.T, bin, backend string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := fmt.Sprintf(`global
  maxconn 256
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend api
  bind %s
  option forwardfor
  default_backend api
backend api
  server api %s
`, addr, backend)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Dir = dir
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() //nolint:errcheck // the exit is reported below
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not listen on %s: %s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
