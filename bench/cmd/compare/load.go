package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// workload is what one run sends: requests cycle through paths (and the
// body of the same index, when there are bodies). A single path is sent
// as a constant request, which is the cheapest thing for the loader.
type workload struct {
	Method      string
	Paths       []string
	Bodies      []string
	ContentType string
	// ForwardedFor, when set, is the X-Forwarded-For value of each request
	// in turn: many clients behind one trusted proxy.
	ForwardedFor []string
	// OK is the status every response must have; others count as errors.
	OK int
}

// measurement is one run's outcome.
type measurement struct {
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"` // socket errors, timeouts and statuses other than OK
	RPS      float64       `json:"rps"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	// CPUPerReq is the target process's CPU time (user and system) over
	// the run divided by its requests: the cost of one request, which
	// other load on the machine disturbs much less than req/s.
	CPUPerReq time.Duration `json:"cpu_per_req_ns"`
	// MeanBatch is the mean number of orders per transaction of api-perf's
	// order pipeline over the run (order scenarios; 0 when unknown).
	MeanBatch float64 `json:"mean_batch,omitempty"`
	// RedisCallsPerReq is the rate limiter's Redis round trips over the
	// run divided by its requests, for servers with the Redis limiter on.
	RedisCallsPerReq float64 `json:"redis_calls_per_req,omitempty"`
}

// loader drives one target for a while.
type loader interface {
	Name() string
	Run(ctx context.Context, addr string, w workload, conns int, d time.Duration) (measurement, error)
}

// wrkLoader runs wrk with a generated Lua script whose done() prints the
// numbers as one JSON line, so nothing depends on wrk's text layout.
type wrkLoader struct {
	path    string
	cpus    string // taskset CPU list; empty leaves wrk unpinned
	threads int
	dir     string // where scripts are written
	seq     atomic.Int64
}

func (l *wrkLoader) Name() string {
	if l.cpus != "" {
		return fmt.Sprintf("wrk (%d thread, CPU %s)", l.threads, l.cpus)
	}
	return fmt.Sprintf("wrk (%d threads)", l.threads)
}

func (l *wrkLoader) Run(ctx context.Context, addr string, w workload, conns int, d time.Duration) (measurement, error) {
	script := filepath.Join(l.dir, fmt.Sprintf("load-%d.lua", l.seq.Add(1)))
	if err := os.WriteFile(script, []byte(wrkScript(w)), 0o644); err != nil {
		return measurement{}, err
	}
	defer os.Remove(script)
	threads := min(l.threads, conns)
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(int(math.Ceil(d.Seconds()))) + "s", "--timeout", "5s", "-s", script, "http://" + addr + w.Paths[0]}
	name := l.path
	if l.cpus != "" {
		name, args = "taskset", append([]string{"-c", l.cpus, l.path}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return measurement{}, fmt.Errorf("wrk: %v\n%s", err, out.String())
	}
	return parseWrk(out.Bytes(), w.OK)
}

// wrkResult is the JSON line the generated done() prints.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Timeout    int64   `json:"timeout"`
	Status     int64   `json:"status"`
	P50        float64 `json:"p50_us"`
	P99        float64 `json:"p99_us"`
}

const wrkMarker = "BENCHJSON "

// parseWrk finds the done() line in wrk's output. wrk counts a response
// with status 400 or more as a status error; a workload that expects
// anything but a 2xx cannot be checked that way and is refused earlier.
func parseWrk(out []byte, ok int) (measurement, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, wrkMarker)
		if i < 0 {
			continue
		}
		var r wrkResult
		if err := json.Unmarshal([]byte(line[i+len(wrkMarker):]), &r); err != nil {
			return measurement{}, fmt.Errorf("wrk result line %q: %w", line, err)
		}
		if r.DurationUS <= 0 {
			return measurement{}, fmt.Errorf("wrk result line %q has no duration", line)
		}
		return measurement{
			Requests: r.Requests,
			Errors:   r.Connect + r.Read + r.Write + r.Timeout + r.Status,
			RPS:      float64(r.Requests) / (float64(r.DurationUS) / 1e6),
			P50:      time.Duration(r.P50 * float64(time.Microsecond)),
			P99:      time.Duration(r.P99 * float64(time.Microsecond)),
		}, nil
	}
	return measurement{}, fmt.Errorf("wrk printed no result line:\n%s", out)
}

// wrkScript renders the Lua for a workload. Each wrk thread starts its
// rotation at a different offset so threads do not walk in step.
func wrkScript(w workload) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wrk.method = %s\n", luaString(w.Method))
	if w.ContentType != "" {
		fmt.Fprintf(&b, "wrk.headers[\"Content-Type\"] = %s\n", luaString(w.ContentType))
	}
	if len(w.Bodies) == 1 {
		fmt.Fprintf(&b, "wrk.body = %s\n", luaString(w.Bodies[0]))
	}
	if len(w.Paths) > 1 || len(w.Bodies) > 1 || len(w.ForwardedFor) > 0 {
		b.WriteString("local paths = {")
		for i, p := range w.Paths {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(luaString(p))
		}
		b.WriteString("}\n")
		if len(w.Bodies) > 1 {
			b.WriteString("local bodies = {")
			for i, s := range w.Bodies {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(luaString(s))
			}
			b.WriteString("}\n")
		} else {
			b.WriteString("local bodies = nil\n")
		}
		if len(w.ForwardedFor) > 0 {
			b.WriteString("local xff = {")
			for i, s := range w.ForwardedFor {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(luaString(s))
			}
			b.WriteString("}\n")
		} else {
			b.WriteString("local xff = nil\n")
		}
		b.WriteString(`local n = #paths
if bodies ~= nil and #bodies > n then n = #bodies end
if xff ~= nil and #xff > n then n = #xff end
local i = 0
local thread_count = 0
setup = function(thread)
  thread_count = thread_count + 1
  thread:set("offset", thread_count * 7919)
end
init = function(args)
  i = (offset or 0) % n
end
request = function()
  i = i % n + 1
  local p = paths[((i - 1) % #paths) + 1]
  local h = nil
  if xff ~= nil then
    h = {["X-Forwarded-For"] = xff[((i - 1) % #xff) + 1]}
  end
  if bodies ~= nil then
    return wrk.format(nil, p, h, bodies[((i - 1) % #bodies) + 1])
  end
  return wrk.format(nil, p, h)
end
`)
	}
	b.WriteString(`done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("` + wrkMarker + `{\"requests\":%d,\"duration_us\":%d,\"connect\":%d,\"read\":%d,\"write\":%d,\"timeout\":%d,\"status\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
`)
	return b.String()
}

// luaString quotes s as a Lua string literal.
func luaString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// builtinLoader is the fallback when wrk is not installed: conns
// goroutines, each with one keep-alive connection, send requests back to
// back and record every latency.
type builtinLoader struct{}

func (builtinLoader) Name() string { return "built-in fasthttp client (wrk not found)" }

func (builtinLoader) Run(ctx context.Context, addr string, w workload, conns int, d time.Duration) (measurement, error) {
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxIdemponentCallAttempts: 1}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		total     int64
		errs      int64
		wg        sync.WaitGroup
	)
	start := time.Now()
	for g := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			lat := make([]time.Duration, 0, 1<<14)
			var n, bad int64
			for i := g * 7919; ctx.Err() == nil; i++ {
				req.Reset()
				req.Header.SetMethod(w.Method)
				req.SetRequestURI("http://" + addr + w.Paths[i%len(w.Paths)])
				if len(w.Bodies) > 0 {
					req.Header.SetContentType(w.ContentType)
					req.SetBodyString(w.Bodies[i%len(w.Bodies)])
				}
				if len(w.ForwardedFor) > 0 {
					req.Header.Set("X-Forwarded-For", w.ForwardedFor[i%len(w.ForwardedFor)])
				}
				t := time.Now()
				err := hc.Do(req, resp)
				lat = append(lat, time.Since(t))
				n++
				if err != nil || resp.StatusCode() != w.OK {
					bad++
				}
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			total += n
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if total == 0 {
		return measurement{}, errors.New("no request completed")
	}
	slices.Sort(latencies)
	return measurement{Requests: total, Errors: errs, RPS: float64(total) / elapsed.Seconds(),
		P50: percentile(latencies, 50), P99: percentile(latencies, 99)}, nil
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
