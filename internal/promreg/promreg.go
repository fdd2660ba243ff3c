// Package promreg registers Prometheus collectors the one way api-perf does:
// a collector already registered under the same description is shared
// (several stores, caches or pipelines may report to one registry), and any
// other conflict is an error for the caller to return, so that a clash of
// metric names is found when the process starts, not hidden.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector of
// the same type already registered under the same description.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
