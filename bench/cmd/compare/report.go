package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/api-perf/api-perf/bench"
)

// series is one target's runs in one scenario at one concurrency.
type series struct {
	Target string        `json:"target"`
	Runs   []measurement `json:"runs"`
	Median measurement   `json:"median"`
}

// cell is one scenario at one concurrency: the server's runs and, when the
// scenario has one, the ceiling's, measured in alternation.
type cell struct {
	Scenario string  `json:"scenario"`
	Conns    int     `json:"conns"`
	Server   series  `json:"server"`
	Ceiling  *series `json:"ceiling,omitempty"`
	// Ratio is the median of the per-round ratios server/ceiling req/s:
	// pairing each server run with the ceiling run next to it cancels
	// slow drift of the machine.
	Ratio float64 `json:"ratio,omitempty"`
	// CPURatio is the median of the per-round ratios of CPU per request,
	// ceiling/server: 1 means the server spends no more CPU on a request
	// than the ceiling does. It moves far less with other load on the
	// machine than Ratio does.
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	// Target is the ratio the server should reach; 0 means none.
	Target float64 `json:"target,omitempty"`
}

// report is everything a run produced, written as results.json.
type report struct {
	Started  time.Time         `json:"started"`
	Command  string            `json:"command"`
	Machine  map[string]string `json:"machine"`
	Loader   string            `json:"loader"`
	Pinning  string            `json:"pinning"`
	Rounds   int               `json:"rounds"`
	Duration string            `json:"duration"`
	Notes    []string          `json:"notes,omitempty"`
	Cells    []cell            `json:"cells"`
	// FillAfterWrite is the cache-fill measurement of the list scenarios'
	// primary and replica.
	FillAfterWrite *bench.FillCost `json:"fill_after_write,omitempty"`
}

// finish computes medians and ratios.
func (c *cell) finish() {
	c.Server.Median = medianOf(c.Server.Runs)
	if c.Ceiling == nil {
		return
	}
	c.Ceiling.Median = medianOf(c.Ceiling.Runs)
	var ratios, cpu []float64
	for i := range min(len(c.Server.Runs), len(c.Ceiling.Runs)) {
		s, ce := c.Server.Runs[i], c.Ceiling.Runs[i]
		if ce.RPS > 0 {
			ratios = append(ratios, s.RPS/ce.RPS)
		}
		if s.CPUPerReq > 0 && ce.CPUPerReq > 0 {
			cpu = append(cpu, float64(ce.CPUPerReq)/float64(s.CPUPerReq))
		}
	}
	c.Ratio, c.CPURatio = median(ratios), median(cpu)
}

// medianOf takes the median of each number separately.
func medianOf(runs []measurement) measurement {
	var m measurement
	var rps, p50, p99, cpu, calls []float64
	for _, r := range runs {
		rps = append(rps, r.RPS)
		calls = append(calls, r.RedisCallsPerReq)
		cpu = append(cpu, float64(r.CPUPerReq))
		p50 = append(p50, float64(r.P50))
		p99 = append(p99, float64(r.P99))
		m.Requests += r.Requests
		m.Errors += r.Errors
	}
	m.RPS = median(rps)
	m.P50 = time.Duration(median(p50))
	m.P99 = time.Duration(median(p99))
	m.CPUPerReq = time.Duration(median(cpu))
	m.RedisCallsPerReq = median(calls)
	return m
}

// median of xs; the mean of the middle two for an even count.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// writeTable prints the Markdown table of the report.
func writeTable(w io.Writer, r *report) {
	fmt.Fprintln(w, "| scenario | conns | api-perf req/s | p50 | p99 | CPU/req | ceiling | req/s | p50 | p99 | CPU/req | ratio | CPU ratio | target | errors | Redis calls/req |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
	for _, c := range r.Cells {
		ceil, crps, cp50, cp99, ccpu, ratio, cpuRatio := "—", "—", "—", "—", "—", "—", "—"
		errs := c.Server.Median.Errors
		if c.Ceiling != nil {
			ceil = c.Ceiling.Target
			crps = fmtRPS(c.Ceiling.Median.RPS)
			cp50, cp99 = fmtDur(c.Ceiling.Median.P50), fmtDur(c.Ceiling.Median.P99)
			ccpu = fmtMicros(c.Ceiling.Median.CPUPerReq)
			ratio = fmt.Sprintf("%.2fx", c.Ratio)
			if c.CPURatio > 0 {
				cpuRatio = fmt.Sprintf("%.2fx", c.CPURatio)
			}
			errs += c.Ceiling.Median.Errors
		}
		target := "info"
		if c.Target > 0 {
			verdict := "met"
			if c.Ratio < c.Target {
				verdict = "**missed**"
			}
			target = fmt.Sprintf("≥ %.2fx %s", c.Target, verdict)
		}
		calls := "—"
		if c.Server.Median.RedisCallsPerReq > 0 {
			calls = fmt.Sprintf("%.3f", c.Server.Median.RedisCallsPerReq)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |\n",
			c.Scenario, c.Conns, fmtRPS(c.Server.Median.RPS), fmtDur(c.Server.Median.P50), fmtDur(c.Server.Median.P99),
			fmtMicros(c.Server.Median.CPUPerReq), ceil, crps, cp50, cp99, ccpu, ratio, cpuRatio, target, errs, calls)
	}
}

// fmtMicros prints a per-request CPU cost in microseconds.
func fmtMicros(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	if us := float64(d) / float64(time.Microsecond); us < 100 {
		return fmt.Sprintf("%.1f µs", us)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func fmtRPS(v float64) string { return fmt.Sprintf("%.0f", v) }

// fmtDur prints a latency in milliseconds with sensible precision.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	default:
		return fmt.Sprintf("%.1f ms", ms)
	}
}

// writeResults stores results.json, results.md and chart.svg in dir.
func writeResults(dir string, r *report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Command: `%s`  \n", r.Command)
	fmt.Fprintf(&md, "Machine: %s, %s CPUs, %s, %s  \n", r.Machine["cpu"], r.Machine["nproc"], r.Machine["kernel"], r.Machine["go"])
	fmt.Fprintf(&md, "Load average at start / end: %s / %s  \n", r.Machine["loadavg_at_start"], r.Machine["loadavg_at_end"])
	fmt.Fprintf(&md, "Loader: %s; pinning: %s; %d round(s) of %s per point, medians.\n\n", r.Loader, r.Pinning, r.Rounds, r.Duration)
	writeTable(&md, r)
	for _, n := range r.Notes {
		fmt.Fprintf(&md, "\n- %s", n)
	}
	md.WriteString("\n")
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	svg, err := renderChart(r)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), svg, 0o644)
}
