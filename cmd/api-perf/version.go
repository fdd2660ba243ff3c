package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at build time with -ldflags "-X main.version=v1.2.3 -X
// main.revision=<commit> -X main.buildTime=<RFC 3339>" (the Dockerfile,
// scripts/build-lambda.sh and the Makefile do). A build that does not set
// them falls back to what the Go toolchain recorded (see buildVersion).
var (
	version   = ""
	revision  = ""
	buildTime = ""
)

// buildInfo says what this binary is.
type buildInfo struct {
	Version   string
	Revision  string
	BuildTime string
	GoVersion string
	Platform  string
	// Modified reports a build from a work tree with uncommitted changes
	// (known only from the toolchain's VCS stamp).
	Modified bool
}

// buildVersion combines the link-time variables with the module and VCS
// information the toolchain embeds: `go install ...@v1.2.3` records the
// module version, and a build inside a git work tree records the commit,
// its time and whether the tree was dirty. Docker builds see no .git, so
// they rely on the link-time variables.
func buildVersion() buildInfo {
	b := buildInfo{Version: version, Revision: revision, BuildTime: buildTime,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Revision == "" {
					b.Revision = s.Value
				}
			case "vcs.time":
				if b.BuildTime == "" {
					b.BuildTime = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	if b.BuildTime == "" {
		b.BuildTime = "unknown"
	}
	return b
}

// printVersion writes the answer of `api-perf version`.
func printVersion(w io.Writer, b buildInfo) error {
	rev := b.Revision
	if b.Modified {
		rev += " (modified)"
	}
	_, err := fmt.Fprintf(w, "api-perf %s\n  revision:   %s\n  build time: %s\n  go:         %s %s\n",
		b.Version, rev, b.BuildTime, b.GoVersion, b.Platform)
	return err
}

// newBuildInfoMetric is apiperf_build_info, always 1: its labels say which
// build answers, so a dashboard can mark deployments and a query can join
// the version onto any other series.
func newBuildInfoMetric(b buildInfo) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "apiperf_build_info",
		Help:        "Always 1; the labels name the running build's version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
