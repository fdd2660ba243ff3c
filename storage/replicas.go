package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"

	apiperf "github.com/api-perf/api-perf"
)

// Read replicas (Config.ReadDSNs). Lists are the only reads that go to a
// replica; everything else (writes, transactions, the order path, and
// reads by id, which fill the cache and answer If-Match) stays on the
// primary, so no client ever sees its own acknowledged write undone.
// docs/replicas.md has the reasoning; this file has the mechanism:
//
//   - Every process with replicas writes a heartbeat row on the primary
//     (UPDATE replication_heartbeat SET ts = primary's UTC_TIMESTAMP(6))
//     every 250 ms (heartbeatInterval), on a connection of its own.
//   - A checker per replica reads that row on the replica, also on a
//     connection of its own: lag = replica's UTC_TIMESTAMP(6) - ts. The
//     replica then holds every write acknowledged before ts.
//   - A replica may take list reads until start+MaxLag-lag, where start is
//     when its last check began: past that instant its data could be older
//     than MaxLag, so a stalled checker or a replica that stops answering
//     loses its reads on time, without anybody noticing the failure.
//   - A list read on a replica has a deadline of its own (ReplicaTimeout,
//     at most half the request's remaining budget). If it fails, the
//     replica is taken out at once and the read runs again on another fit
//     replica or the primary; only the checker puts a replica back.

const (
	// heartbeatInterval is how often the heartbeat is written and each
	// replica checked, or a quarter of the maximum lag if that is less
	// (but not below minHeartbeatInterval), so that a healthy replica
	// always has a fresh measurement.
	heartbeatInterval    = 250 * time.Millisecond
	minHeartbeatInterval = 50 * time.Millisecond
	// defaultMaxLag is Config.MaxReplicaLag's default.
	defaultMaxLag = time.Second
	// defaultReplicaTimeout is Config.ReplicaTimeout's default.
	defaultReplicaTimeout = 500 * time.Millisecond
	// maxReplicaAttempts bounds the replicas one list read tries before
	// the primary.
	maxReplicaAttempts = 2
)

// The heartbeat's two statements. UTC_TIMESTAMP is read when a statement
// starts, so of two processes writing at once the later commit may carry
// the earlier time: GREATEST keeps ts from going back.
const (
	heartbeatWrite = "INSERT INTO replication_heartbeat (id, ts) VALUES (1, UTC_TIMESTAMP(6)) " +
		"ON DUPLICATE KEY UPDATE ts = GREATEST(ts, VALUES(ts))"
	heartbeatLag = "SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) FROM replication_heartbeat WHERE id = 1"
)

// replicaState is what the checker last concluded about a replica.
type replicaState int

const (
	stateUnknown replicaState = iota // not checked yet
	stateHealthy                     // answers, within the maximum lag
	stateLagging                     // answers, too far behind
	stateDown                        // does not answer, or a read failed
)

func (s replicaState) String() string {
	return [...]string{"unknown", "healthy", "lagging", "down"}[s]
}

// replica is one server of Config.ReadDSNs.
type replica struct {
	// name is host:port from the DSN: the metrics' label, the logs' key.
	name string
	// db serves list reads; check is a one-connection pool of the
	// checker's, so that a busy read pool does not delay the measurement.
	db, check *sql.DB
	// stmts are the list statements, prepared by the checker once the
	// replica has answered (a replica down at start-up must not fail it).
	stmts atomic.Pointer[listStatements]
	// usableUntil is the monotonic instant (replicaSet.clock) until which
	// list reads may go here; 0 while they may not.
	usableUntil atomic.Int64
	// gen counts failed reads, so that a check that began before a read
	// failed does not put the replica back in.
	gen atomic.Uint64

	lagGauge, healthyGauge prometheus.Gauge
	reads                  prometheus.Counter

	mu       sync.Mutex
	state    replicaState
	reason   string        // why it is lagging or down, for logs and /readyz
	lastLag  time.Duration // the last measured lag
	lastSeen time.Duration // clock() when that measurement began
}

// replicaSet routes list reads and keeps the replicas' health.
type replicaSet struct {
	replicas []*replica
	// heartbeat is a one-connection pool to the primary for the heartbeat.
	heartbeat *sql.DB
	dialect   *dialect
	maxLag    time.Duration
	timeout   time.Duration
	interval  time.Duration
	m         *metrics
	log       *slog.Logger
	epoch     time.Time
	next      atomic.Uint64

	beatFailing bool // touched by the heartbeat goroutine only
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// clock is the monotonic time since the set was made.
func (s *replicaSet) clock() time.Duration { return time.Since(s.epoch) }

// openReplicas prepares the set for cfg's read DSNs; start runs it.
func openReplicas(cfg Config, primaryDSN string, m *metrics) (_ *replicaSet, err error) {
	s := &replicaSet{dialect: mysqlDialect, maxLag: cfg.MaxReplicaLag, timeout: cfg.ReplicaTimeout, m: m,
		log: cfg.Logger, epoch: time.Now()}
	if s.maxLag <= 0 {
		s.maxLag = defaultMaxLag
	}
	if s.timeout <= 0 {
		s.timeout = defaultReplicaTimeout
	}
	s.interval = max(min(heartbeatInterval, s.maxLag/4), minHeartbeatInterval)
	if s.log == nil {
		s.log = slog.Default()
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	seen := map[string]bool{}
	for _, raw := range cfg.ReadDSNs {
		dsn, err := normalizeDSN("ReadDSNs", raw)
		if err != nil {
			return nil, err
		}
		c, _ := mysql.ParseDSN(dsn)
		if seen[c.Addr] {
			return nil, &ConfigError{Field: "ReadDSNs", Err: fmt.Errorf("%s is listed twice", c.Addr)}
		}
		seen[c.Addr] = true
		r := &replica{name: c.Addr}
		if r.db, err = sql.Open("mysql", dsn); err != nil {
			return nil, err
		}
		s.replicas = append(s.replicas, r)
		if r.check, err = sql.Open("mysql", dsn); err != nil {
			return nil, err
		}
		r.check.SetMaxOpenConns(1)
		// Behind one endpoint for several servers (an Aurora reader
		// endpoint), a new connection now and then samples another.
		r.check.SetConnMaxLifetime(time.Minute)
		r.lagGauge = m.lag.WithLabelValues(r.name)
		r.healthyGauge = m.healthy.WithLabelValues(r.name)
		r.reads = m.reads.WithLabelValues(r.name, queryList)
	}
	if s.heartbeat, err = sql.Open("mysql", primaryDSN); err != nil {
		return nil, err
	}
	s.heartbeat.SetMaxOpenConns(1)
	s.heartbeat.SetConnMaxLifetime(30 * time.Minute)
	m.maxLag.Set(s.maxLag.Seconds())
	return s, nil
}

// size applies the primary's pool size to each replica's read pool.
func (s *replicaSet) size(maxOpen, maxIdle int) {
	for _, r := range s.replicas {
		r.db.SetMaxOpenConns(maxOpen)
		r.db.SetMaxIdleConns(maxIdle)
		r.db.SetConnMaxLifetime(30 * time.Minute)
		r.db.SetConnMaxIdleTime(5 * time.Minute)
	}
}

// start runs the heartbeat writer and one checker per replica until close.
func (s *replicaSet) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1 + len(s.replicas))
	go func() {
		defer s.wg.Done()
		s.every(ctx, s.beat)
	}()
	for _, r := range s.replicas {
		go func() {
			defer s.wg.Done()
			s.every(ctx, func(ctx context.Context) { s.checkReplica(ctx, r) })
		}()
	}
}

// every runs fn now and then every interval until ctx ends; a run that
// takes longer delays the next one rather than overlapping it.
func (s *replicaSet) every(ctx context.Context, fn func(context.Context)) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// close stops the goroutines and closes every pool.
func (s *replicaSet) close() {
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
	for _, r := range s.replicas {
		if st := r.stmts.Load(); st != nil {
			st.close()
		}
		for _, db := range []*sql.DB{r.db, r.check} {
			if db != nil {
				db.Close()
			}
		}
	}
	if s.heartbeat != nil {
		s.heartbeat.Close()
	}
}

// beat writes the heartbeat on the primary. A failure is logged once per
// change and counted; while beats fail, replicas look lagging and lists
// move to the primary, which is the safe side.
func (s *replicaSet) beat(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, s.timeout)
	_, err := s.heartbeat.ExecContext(bctx, heartbeatWrite)
	cancel()
	if ctx.Err() != nil {
		return
	}
	switch {
	case err != nil:
		s.m.heartbeatErrors.Inc()
		if !s.beatFailing {
			s.log.Warn("replication heartbeat: cannot write on the primary; replicas will look lagging", "error", err)
		}
		s.beatFailing = true
	case s.beatFailing:
		s.log.Info("replication heartbeat: writing on the primary again")
		s.beatFailing = false
	}
}

// checkReplica measures r's lag and decides whether it may take reads.
func (s *replicaSet) checkReplica(ctx context.Context, r *replica) {
	gen := r.gen.Load()
	start := s.clock()
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var us sql.NullInt64
	err := r.check.QueryRowContext(cctx, heartbeatLag).Scan(&us)
	if err == nil && !us.Valid {
		err = errors.New("replication_heartbeat has no row")
	}
	if err == nil && r.stmts.Load() == nil {
		err = s.prepare(cctx, r)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		r.usableUntil.Store(0)
		s.setState(r, stateDown, err.Error(), 0, false)
		return
	}
	// A replica whose clock is behind the primary's would measure a
	// negative lag; it counts as none (docs/replicas.md: clocks must be
	// synchronised, as for any heartbeat).
	lag := max(time.Duration(us.Int64)*time.Microsecond, 0)
	if lag > s.maxLag {
		r.usableUntil.Store(0)
		s.setState(r, stateLagging, fmt.Sprintf("%v behind, more than the maximum lag %v", lag.Round(time.Millisecond), s.maxLag), lag, true)
		return
	}
	if r.gen.Load() != gen {
		// A read failed while this check ran; the next check decides.
		return
	}
	r.usableUntil.Store(int64(start + s.maxLag - lag))
	s.setState(r, stateHealthy, "", lag, true)
}

// prepare prepares the list statements on r once it answers.
func (s *replicaSet) prepare(ctx context.Context, r *replica) error {
	st := new(listStatements)
	if err := prepareStatements(ctx, r.db, s.dialect, reflect.ValueOf(st).Elem()); err != nil {
		st.close()
		return err
	}
	if !r.stmts.CompareAndSwap(nil, st) {
		st.close()
	}
	return nil
}

// setState records what a check or a read found, updates the replica's
// gauges, and logs when the state changes. measured says lag is a new
// measurement; otherwise the lag counts up from the last one.
func (s *replicaSet) setState(r *replica, st replicaState, reason string, lag time.Duration, measured bool) {
	now := s.clock()
	r.mu.Lock()
	prev := r.state
	r.state, r.reason = st, reason
	if measured {
		r.lastLag, r.lastSeen = lag, now
	} else {
		lag = r.lastLag + (now - r.lastSeen)
	}
	r.mu.Unlock()
	r.lagGauge.Set(lag.Seconds())
	if st == stateHealthy {
		r.healthyGauge.Set(1)
	} else {
		r.healthyGauge.Set(0)
	}
	switch {
	case st == prev:
	case st == stateHealthy:
		s.log.Info("read replica healthy: list reads go to it", "replica", r.name, "lag", lag.Round(time.Millisecond).String())
	default:
		s.log.Warn("read replica not used for list reads", "replica", r.name, "state", st.String(), "reason", reason)
	}
}

// readFailed takes r out at once after a failed read; its checker puts it
// back once it answers within the maximum lag again.
func (s *replicaSet) readFailed(r *replica, err error) {
	r.gen.Add(1)
	r.usableUntil.Store(0)
	s.setState(r, stateDown, "a read failed: "+err.Error(), 0, false)
}

// pick chooses, in turn, a replica that may take a list read now, other
// than skip. Without one it says why: reasonLag when some replica
// answers its checks, reasonDown when none does.
func (s *replicaSet) pick(skip *replica) (*replica, string) {
	now := int64(s.clock())
	n := len(s.replicas)
	first := int(s.next.Add(1) % uint64(n))
	answering := false
	for i := range n {
		r := s.replicas[(first+i)%n]
		if r == skip {
			continue
		}
		if now < r.usableUntil.Load() && r.stmts.Load() != nil {
			return r, ""
		}
		if !answering {
			r.mu.Lock()
			answering = r.state == stateLagging || r.state == stateHealthy
			r.mu.Unlock()
		}
	}
	if answering {
		return nil, reasonLag
	}
	return nil, reasonDown
}

// listRead runs read with a replica's list statements when one may take
// it, else with the primary's. A replica's attempt has a deadline of its
// own; when it fails, the replica is taken out and read runs again on
// another replica or on the primary, so a dead or hung replica costs the
// request time, not an error. read must start its result afresh on each
// call.
func (d *DB) listRead(ctx context.Context, read func(context.Context, *listStatements) error) error {
	s := d.replicas
	if s == nil {
		d.metrics.primaryList.Inc()
		return read(ctx, &d.stmts.lists)
	}
	var failed *replica
	reason := ""
	for range maxReplicaAttempts {
		r, why := s.pick(failed)
		if r == nil {
			if reason == "" {
				reason = why
			}
			break
		}
		conclusive, err := s.readOn(ctx, r, read)
		if err == nil {
			r.reads.Inc()
			return nil
		}
		if ctx.Err() != nil {
			// The request's own budget is spent (or it was cancelled):
			// that is no fault of the replica's.
			return err
		}
		if conclusive {
			s.readFailed(r, err)
		}
		failed, reason = r, reasonError
	}
	d.metrics.fallback(reason)
	d.metrics.primaryList.Inc()
	return read(ctx, &d.stmts.lists)
}

// readOn runs read on r under the replica deadline: ReplicaTimeout, or
// half of what is left of ctx's budget if that is less, so the primary
// keeps time for the retry. A failure is conclusive, and takes the replica
// out, unless it is running out of a deadline shortened that way: a
// request that arrives with little time left says nothing about the
// replica.
func (s *replicaSet) readOn(ctx context.Context, r *replica, read func(context.Context, *listStatements) error) (conclusive bool, err error) {
	timeout, shortened := s.timeout, false
	if dl, ok := ctx.Deadline(); ok {
		if half := time.Until(dl) / 2; half < timeout {
			timeout, shortened = half, true
		}
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = read(rctx, r.stmts.Load())
	return !shortened || !errors.Is(rctx.Err(), context.DeadlineExceeded), err
}

// Ping reports whether at least one replica may take list reads: the
// readiness check "replicas", which never makes the service unready
// (lists fall back to the primary), only degraded.
func (s *replicaSet) Ping(context.Context) error {
	now := int64(s.clock())
	var states []string
	for _, r := range s.replicas {
		if now < r.usableUntil.Load() && r.stmts.Load() != nil {
			return nil
		}
		r.mu.Lock()
		st := r.name + ": " + r.state.String()
		switch {
		case r.state == stateHealthy:
			// Its last measurement is too old to vouch for MaxLag now:
			// the checker is late, or the replica is slow to answer.
			st = r.name + ": lagging (no measurement within the maximum lag)"
		case r.reason != "":
			st += " (" + r.reason + ")"
		}
		r.mu.Unlock()
		states = append(states, st)
	}
	return apiperf.Errorf(apiperf.EUNAVAILABLE, "no read replica is fit for list reads; lists go to the primary: %s",
		strings.Join(states, "; "))
}

// Replicas is the readiness check of the read replicas, nil when there are
// none. Its Ping fails while no replica may take list reads.
func (d *DB) Replicas() apiperf.Pinger {
	if d.replicas == nil {
		return nil
	}
	return d.replicas
}

// ReplicaPools are the replicas' read pools by host:port, for the pool
// metrics.
func (d *DB) ReplicaPools() map[string]*sql.DB {
	if d.replicas == nil {
		return nil
	}
	out := make(map[string]*sql.DB, len(d.replicas.replicas))
	for _, r := range d.replicas.replicas {
		out[r.name] = r.db
	}
	return out
}
