package orderpipe

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/api-perf/api-perf/internal/promreg"
)

// metrics are the pipeline's series; registered only when a Registerer is
// given, observed either way.
type metrics struct {
	batchSize prometheus.Histogram
	queueWait prometheus.Histogram
	commit    prometheus.Histogram
	queueFull prometheus.Counter
	splits    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "apiperf_order_batch_size",
			Help:    "Orders placed in one transaction by the order pipeline.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "apiperf_order_queue_wait_seconds",
			Help:    "How long an order waited in its lane for the batch before it to commit (orders that found the lane idle are not counted).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "apiperf_order_commit_seconds",
			Help:    "How long one batch took to place, from its start to every order's outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		queueFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiperf_order_queue_full_total",
			Help: "Orders refused at once (503) because their lane's queue held ORDER_QUEUE_MAX orders.",
		}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiperf_order_batch_splits_total",
			Help: "Batches that failed as a whole before committing and were placed again one order at a time.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, h := range []*prometheus.Histogram{&m.batchSize, &m.queueWait, &m.commit} {
		if *h, err = promreg.Register(reg, *h); err != nil {
			return nil, err
		}
	}
	for _, c := range []*prometheus.Counter{&m.queueFull, &m.splits} {
		if *c, err = promreg.Register(reg, *c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
