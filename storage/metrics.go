package storage

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/api-perf/api-perf/internal/promreg"
)

// Label values of apiperf_db_reads_total.
const (
	// targetPrimary is the target label of reads on the primary; a
	// replica's reads carry its host:port.
	targetPrimary = "primary"
	queryList     = "list"
	queryByID     = "by_id"
)

// Label values of apiperf_db_read_fallbacks_total{reason}: why a list read
// that could have gone to a replica went to the primary.
const (
	// reasonLag: replicas answer their checks, but none is within
	// Config.MaxReplicaLag.
	reasonLag = "lag"
	// reasonDown: no replica answers its checks.
	reasonDown = "down"
	// reasonError: the read failed on a replica (an error or its own
	// deadline) and was run again on the primary.
	reasonError = "error"
)

// metrics holds the read-routing series. The counters of the read paths
// are resolved once, so counting is one atomic add and never allocates.
type metrics struct {
	reads                    *prometheus.CounterVec
	primaryList, primaryByID prometheus.Counter
	fbLag, fbDown, fbError   prometheus.Counter
	lag, healthy             *prometheus.GaugeVec
	maxLag                   prometheus.Gauge
	heartbeatErrors          prometheus.Counter
}

// newMetrics builds the series and registers them with reg when it is not
// nil. The replica series are registered only when replicas are configured
// (withReplicas), so that a deployment without them exports nothing it
// cannot fill.
func newMetrics(reg prometheus.Registerer, withReplicas bool) (*metrics, error) {
	m := &metrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiperf_db_reads_total",
			Help: "Reads outside transactions by target (primary, or a replica's host:port) and query (list, by_id).",
		}, []string{"target", "query"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiperf_db_replica_lag_seconds",
			Help: "How far each replica is behind the primary as this process last measured it (replication heartbeat); while a replica does not answer, it counts up from its last measurement.",
		}, []string{"replica"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiperf_db_replica_healthy",
			Help: "1 while list reads may go to the replica (it answers and is within the maximum lag), else 0.",
		}, []string{"replica"}),
		maxLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apiperf_db_replica_max_lag_seconds",
			Help: "The maximum replica lag: a replica further behind is not read.",
		}),
		heartbeatErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiperf_db_heartbeat_errors_total",
			Help: "Replication heartbeats this process failed to write on the primary; while none is written, replicas look lagging.",
		}),
	}
	fallbacks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiperf_db_read_fallbacks_total",
		Help: "List reads that went to the primary although replicas are configured, by reason: lag, down, error.",
	}, []string{"reason"})
	if reg != nil {
		var err error
		if m.reads, err = promreg.Register(reg, m.reads); err != nil {
			return nil, err
		}
		if withReplicas {
			if m.lag, err = promreg.Register(reg, m.lag); err != nil {
				return nil, err
			}
			if m.healthy, err = promreg.Register(reg, m.healthy); err != nil {
				return nil, err
			}
			if m.maxLag, err = promreg.Register(reg, m.maxLag); err != nil {
				return nil, err
			}
			if m.heartbeatErrors, err = promreg.Register(reg, m.heartbeatErrors); err != nil {
				return nil, err
			}
			if fallbacks, err = promreg.Register(reg, fallbacks); err != nil {
				return nil, err
			}
		}
	}
	m.primaryList = m.reads.WithLabelValues(targetPrimary, queryList)
	m.primaryByID = m.reads.WithLabelValues(targetPrimary, queryByID)
	m.fbLag = fallbacks.WithLabelValues(reasonLag)
	m.fbDown = fallbacks.WithLabelValues(reasonDown)
	m.fbError = fallbacks.WithLabelValues(reasonError)
	return m, nil
}

// fallback counts one list read sent to the primary for reason.
func (m *metrics) fallback(reason string) {
	switch reason {
	case reasonLag:
		m.fbLag.Inc()
	case reasonDown:
		m.fbDown.Inc()
	default:
		m.fbError.Inc()
	}
}
