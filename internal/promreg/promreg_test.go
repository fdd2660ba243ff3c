package promreg_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/api-perf/api-perf/internal/promreg"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "x"}
	first, err := promreg.Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	// The same description again: the first collector is shared.
	second, err := promreg.Register(reg, prometheus.NewCounter(opts))
	if err != nil || second != first {
		t.Fatalf("second registration: %v, shared %v", err, second == first)
	}
	// The same name with other labels is a conflict the caller hears of.
	if _, err := promreg.Register(reg, prometheus.NewCounterVec(opts, []string{"a"})); err == nil {
		t.Fatal("a conflicting registration was accepted")
	}
}
