package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"
)

// binary is the api-perf executable, built once per test run.
var binary struct {
	once sync.Once
	path string
	err  error
	dir  string
}

// buildBinary builds the real binary, so tests can signal and kill it as
// an orchestrator would.
func buildBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "api-perf-bin-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "api-perf")
		out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", binary.path, ".").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopSharedReplicaPair()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// process is the api-perf binary running as a child process on a fixed
// loopback port, so that it can be stopped and started again on the same
// address and database.
type process struct {
	t    *testing.T
	bin  string
	env  []string
	addr string
	logs testenv.Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
}

// newProcess prepares (without starting) the binary with the given
// environment on a free loopback port.
func newProcess(t *testing.T, vars map[string]string) *process {
	t.Helper()
	p := &process{t: t, bin: buildBinary(t), addr: freeAddr(t)}
	vars["HTTP_ADDR"] = p.addr
	for k, v := range vars {
		p.env = append(p.env, k+"="+v)
	}
	t.Cleanup(func() {
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		if cmd != nil {
			cmd.Process.Kill() //nolint:errcheck // it may have exited already
			<-p.done
		}
		if t.Failed() {
			t.Logf("server output:\n%s", p.logs.String())
		}
	})
	return p
}

// start runs the binary and waits until /healthz answers. A process that
// exits while starting (its database connection cut under the faults a
// test injects, say) is started again, as an orchestrator's restart policy
// would, up to five times.
func (p *process) start() {
	p.t.Helper()
	for attempt := 1; ; attempt++ {
		err := p.tryStart()
		if err == nil {
			return
		}
		if attempt == 5 {
			p.t.Fatalf("api-perf did not start in %d attempts: %v\n%s", attempt, err, p.logs.String())
		}
		p.t.Logf("api-perf start attempt %d: %v; starting it again", attempt, err)
	}
}

func (p *process) tryStart() error {
	cmd := exec.Command(p.bin)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + p.addr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		select {
		case err := <-done:
			p.mu.Lock()
			p.cmd = nil
			p.mu.Unlock()
			return fmt.Errorf("exited while starting: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("api-perf did not answer /healthz within 30s\n%s", p.logs.String())
		}
	}
}

// stop sends sig and waits for the process to exit, for at most limit. It
// returns how long the exit took and the process's exit error.
func (p *process) stop(sig syscall.Signal, limit time.Duration) (time.Duration, error) {
	p.t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	start := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case err := <-done:
		p.mu.Lock()
		p.cmd = nil
		p.mu.Unlock()
		return time.Since(start), err
	case <-time.After(limit):
		p.t.Fatalf("api-perf did not exit within %v of %v", limit, sig)
		return 0, nil
	}
}

// post sends one order; status 0 means no answer arrived.
func post(client *http.Client, url, body, key string) (status int, retryAfter bool, resp []byte) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	res, err := client.Do(req)
	if err != nil {
		return 0, false, nil
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, false, nil
	}
	return res.StatusCode, res.Header.Get("Retry-After") != "", b
}
