package storage_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
	"github.com/api-perf/api-perf/storage"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopSharedReplicaPair()
	os.Exit(code)
}

// replicaStore is a store on the shared pair's primary that reads lists
// from its replica, with the registry its metrics went to.
type replicaStore struct {
	*storage.DB
	pair *testenv.ReplicaPair
	reg  *prometheus.Registry
	// name is the database's.
	name string
}

// openReplicaStore opens a store on a fresh database of the pair, with cfg's
// replica settings, and waits until the replica takes reads.
func openReplicaStore(t *testing.T, cfg storage.Config) *replicaStore {
	t.Helper()
	pair := testenv.SharedReplicaPair(t)
	primary, replica := pair.Database(t)
	cfg.MySQLDSN = primary
	if cfg.ReadDSNs == nil {
		cfg.ReadDSNs = []string{replica}
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	db, err := storage.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := mysql.ParseDSN(primary)
	if err != nil {
		t.Fatal(err)
	}
	s := &replicaStore{DB: db, pair: pair, reg: reg, name: c.DBName}
	// The migrations must reach the replica before it can be checked.
	if err := pair.WaitReplicated(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// replicatedProduct creates a product, waits until the replica holds it
// and takes list reads, and returns it.
func (s *replicaStore) replicatedProduct(t *testing.T) *apiperf.Product {
	t.Helper()
	p := mustProduct(t, s.DB, 100, 10)
	if err := s.pair.WaitReplicated(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s.waitUsable(t)
	return p
}

// waitUsable waits until the replicas' readiness check passes.
func (s *replicaStore) waitUsable(t *testing.T) {
	t.Helper()
	waitFor(t, "a replica takes list reads", func() bool {
		return s.Replicas().Ping(context.Background()) == nil
	})
}

// metric is the value of the series name{labels}, 0 when absent.
func (s *replicaStore) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// comSelect reads a server's Com_select counter.
func comSelect(t *testing.T, srv interface {
	Status(context.Context, string) (int64, error)
}) int64 {
	t.Helper()
	n, err := srv.Status(context.Background(), "Com_select")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func listIDs(t *testing.T, db *storage.DB) []int64 {
	t.Helper()
	items, err := db.Products(context.Background(), apiperf.Page{Limit: 100})
	if err != nil {
		t.Fatalf("Products: %v", err)
	}
	var ids []int64
	for _, p := range items {
		ids = append(ids, p.ID)
	}
	return ids
}

// TestDB_ReadReplicas runs the replica cases one after the other on one
// shared primary and replica (starting a pair takes seconds).
func TestDB_ReadReplicas(t *testing.T) {
	t.Run("ListsReadFromReplica", testListsReadFromReplica)
	t.Run("LagMovesListsToPrimary", testLagMovesListsToPrimary)
	t.Run("ReadYourWritesByID", testReadYourWritesByID)
	t.Run("HungReplica", testHungReplica)
	t.Run("ShortBudgetBlamesNoReplica", testShortBudget)
	t.Run("KilledReplica", testKilledReplica)
	t.Run("DownAtStart", testDownAtStart)
}

// Lists, of products and of orders, are read on the replica: its
// Com_select grows by at least the number of reads, the primary's not at
// all; by-id reads stay on the primary.
func testListsReadFromReplica(t *testing.T) {
	s := openReplicaStore(t, storage.Config{})
	ctx := context.Background()
	p := s.replicatedProduct(t)

	primary0, replica0 := comSelect(t, s.pair.Primary), comSelect(t, s.pair.Replica)
	const n = 20
	for i := range n {
		if i%2 == 0 {
			if ids := listIDs(t, s.DB); !slices.Equal(ids, []int64{p.ID}) {
				t.Fatalf("list %v, want [%d]", ids, p.ID)
			}
		} else if _, err := s.Orders(ctx, apiperf.OrderFilter{Page: apiperf.Page{Limit: 10}, Status: apiperf.StatusPending}); err != nil {
			t.Fatal(err)
		}
	}
	primary1, replica1 := comSelect(t, s.pair.Primary), comSelect(t, s.pair.Replica)
	if primary1 != primary0 {
		t.Errorf("the primary ran %d SELECTs during %d list reads, want 0", primary1-primary0, n)
	}
	if replica1-replica0 < n {
		t.Errorf("the replica ran %d SELECTs during %d list reads, want at least %d", replica1-replica0, n, n)
	}
	if got := s.metric(t, "apiperf_db_reads_total", "target", s.pair.Replica.Addr(), "query", "list"); got != n {
		t.Errorf("apiperf_db_reads_total{target=replica} = %v, want %d", got, n)
	}
	if got := s.metric(t, "apiperf_db_reads_total", "target", "primary", "query", "list"); got != 0 {
		t.Errorf("apiperf_db_reads_total{target=primary,query=list} = %v, want 0", got)
	}

	if _, err := s.Product(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if got := comSelect(t, s.pair.Primary) - primary1; got != 1 {
		t.Errorf("a read by id ran %d SELECTs on the primary, want 1", got)
	}
	if got := s.metric(t, "apiperf_db_replica_healthy", "replica", s.pair.Replica.Addr()); got != 1 {
		t.Errorf("apiperf_db_replica_healthy = %v, want 1", got)
	}
	if got := s.metric(t, "apiperf_db_replica_max_lag_seconds"); got != 1 {
		t.Errorf("apiperf_db_replica_max_lag_seconds = %v, want 1 (the default)", got)
	}
}

// With the replica's SQL thread stopped, lists keep their staleness bound:
// any list that starts MaxReplicaLag after a write was acknowledged shows
// it (on the primary, once the replica's measured lag is past the bound),
// the fallback is counted as lag, and the replica comes back once it has
// caught up.
func testLagMovesListsToPrimary(t *testing.T) {
	const maxLag = 400 * time.Millisecond
	s := openReplicaStore(t, storage.Config{MaxReplicaLag: maxLag})
	ctx := context.Background()
	s.waitUsable(t)
	if err := s.pair.StopSQLThread(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.pair.Heal(t) })

	p := mustProduct(t, s.DB, 100, 10)
	acked := time.Now()
	sawStale := false
	for {
		started := time.Now()
		ids := listIDs(t, s.DB)
		has := slices.Contains(ids, p.ID)
		if !has && started.Sub(acked) >= maxLag {
			t.Fatalf("a list that started %v after the write was acknowledged misses it (MaxReplicaLag %v)",
				started.Sub(acked).Round(time.Millisecond), maxLag)
		}
		sawStale = sawStale || !has
		if has && started.Sub(acked) >= maxLag {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("a list missed the new product right after the write: %v (allowed within the bound)", sawStale)
	if got := s.metric(t, "apiperf_db_read_fallbacks_total", "reason", "lag"); got == 0 {
		t.Error("no fallback counted with reason lag")
	}
	if err := s.Replicas().Ping(ctx); err == nil || !strings.Contains(err.Error(), "lagging") {
		t.Errorf("replicas readiness = %v, want an error saying the replica is lagging", err)
	}
	waitFor(t, "the measured lag passes the maximum", func() bool {
		return s.metric(t, "apiperf_db_replica_lag_seconds", "replica", s.pair.Replica.Addr()) > maxLag.Seconds()
	})
	if got := s.metric(t, "apiperf_db_replica_healthy", "replica", s.pair.Replica.Addr()); got != 0 {
		t.Errorf("apiperf_db_replica_healthy = %v while lagging, want 0", got)
	}

	if err := s.pair.StartSQLThread(ctx); err != nil {
		t.Fatal(err)
	}
	s.waitUsable(t)
	before := s.metric(t, "apiperf_db_reads_total", "target", s.pair.Replica.Addr(), "query", "list")
	if ids := listIDs(t, s.DB); !slices.Contains(ids, p.ID) {
		t.Fatalf("the caught-up replica's list %v misses product %d", ids, p.ID)
	}
	if got := s.metric(t, "apiperf_db_reads_total", "target", s.pair.Replica.Addr(), "query", "list"); got != before+1 {
		t.Errorf("after catching up the list read did not go to the replica (%v reads, want %v)", got, before+1)
	}
}

// Reads by id are never served by a lagging replica: right after an
// update, Product shows the new version while the replica still holds the
// old one.
func testReadYourWritesByID(t *testing.T) {
	s := openReplicaStore(t, storage.Config{})
	ctx := context.Background()
	p := s.replicatedProduct(t)
	if err := s.pair.StopSQLThread(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.pair.Heal(t) })
	name := "renamed"
	u, err := s.UpdateProduct(ctx, p.ID, apiperf.ProductPatch{Name: &name}, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Product(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != u.Version || got.Name != name {
		t.Fatalf("Product after the update: version %d %q, want version %d %q", got.Version, got.Name, u.Version, name)
	}
	// The replica really is behind: a replica read would have shown the old
	// name.
	var onReplica string
	row := s.pair.Replica.Admin().QueryRowContext(ctx, "SELECT name FROM `"+s.name+"`.products WHERE id = ?", p.ID)
	if err := row.Scan(&onReplica); err != nil {
		t.Fatal(err)
	}
	if onReplica == name {
		t.Fatal("the replica already has the update: the test proves nothing")
	}
}

// A replica that hangs (SIGSTOP: connections stay open, nothing answers)
// costs list reads time, never an error: each read gives the replica its
// own short deadline and then reads the primary; the replica is taken out
// at once and comes back when it answers again.
func testHungReplica(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := openReplicaStore(t, storage.Config{ReplicaTimeout: timeout})
	ctx := context.Background()
	p := s.replicatedProduct(t)
	if err := s.pair.Replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.pair.Heal(t) })
	for range 10 {
		if ids := listIDs(t, s.DB); !slices.Equal(ids, []int64{p.ID}) {
			t.Fatalf("list %v with the replica hung, want [%d]", ids, p.ID)
		}
	}
	// Every read moved, whatever the reason it was counted under: the
	// background check may see the hung replica's heartbeat fall behind
	// (lag) before a read sees it time out (error) or the check marks it
	// down.
	if got := s.metric(t, "apiperf_db_read_fallbacks_total", "reason", "error") +
		s.metric(t, "apiperf_db_read_fallbacks_total", "reason", "down") +
		s.metric(t, "apiperf_db_read_fallbacks_total", "reason", "lag"); got < 10 {
		t.Errorf("%v list reads counted as moved to the primary, want 10", got)
	}
	if err := s.Replicas().Ping(ctx); err == nil {
		t.Error("replicas readiness passes with the replica hung")
	}
	if err := s.pair.Replica.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s.waitUsable(t)
	before := s.metric(t, "apiperf_db_reads_total", "target", s.pair.Replica.Addr(), "query", "list")
	listIDs(t, s.DB)
	if got := s.metric(t, "apiperf_db_reads_total", "target", s.pair.Replica.Addr(), "query", "list"); got != before+1 {
		t.Errorf("the thawed replica takes no reads (%v, want %v)", got, before+1)
	}
}

// A request that arrives with little time left gives the replica half of
// it; running out of that says nothing about the replica, which stays in
// use (a replica that fails within its own full deadline is taken out:
// HungReplica).
func testShortBudget(t *testing.T) {
	s := openReplicaStore(t, storage.Config{ReplicaTimeout: 2 * time.Second})
	ctx := context.Background()
	s.replicatedProduct(t)
	if err := s.pair.Replica.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.pair.Heal(t) })
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := s.Products(rctx, apiperf.Page{Limit: 10})
	cancel()
	t.Logf("a list with 300 ms left and the replica frozen: %v", err)
	if err := s.Replicas().Ping(ctx); err != nil {
		t.Errorf("a shortened replica deadline that ran out took the replica out: %v", err)
	}
	if got := s.metric(t, "apiperf_db_read_fallbacks_total", "reason", "error"); got != 1 {
		t.Errorf("apiperf_db_read_fallbacks_total{reason=error} = %v, want 1", got)
	}
}

// A replica killed with SIGKILL costs no failed read; restarted on the same
// port and data, it takes list reads again.
func testKilledReplica(t *testing.T) {
	s := openReplicaStore(t, storage.Config{})
	ctx := context.Background()
	p := s.replicatedProduct(t)
	listIDs(t, s.DB) // a pooled connection to the replica, for the kill to break
	s.pair.Replica.Kill()
	t.Cleanup(func() { s.pair.Heal(t) })
	for range 10 {
		if ids := listIDs(t, s.DB); !slices.Equal(ids, []int64{p.ID}) {
			t.Fatalf("list %v with the replica killed, want [%d]", ids, p.ID)
		}
	}
	waitFor(t, "the replicas readiness check fails", func() bool {
		return s.Replicas().Ping(ctx) != nil
	})
	s.pair.Heal(t)
	s.waitUsable(t)
	before := comSelect(t, s.pair.Replica)
	for range 5 {
		listIDs(t, s.DB)
	}
	if got := comSelect(t, s.pair.Replica) - before; got < 5 {
		t.Errorf("the restarted replica ran %d SELECTs for 5 list reads", got)
	}
}

// A replica that is down when the store opens does not stop it: lists go
// to the primary, counted as "down", and readiness reports why.
func testDownAtStart(t *testing.T) {
	s := openReplicaStore(t, storage.Config{ReadDSNs: []string{"root@tcp(127.0.0.1:1)/nothing"}})
	mustProduct(t, s.DB, 100, 10)
	if ids := listIDs(t, s.DB); len(ids) != 1 {
		t.Fatalf("list %v, want one product", ids)
	}
	waitFor(t, "the fallback counted as down", func() bool {
		listIDs(t, s.DB)
		return s.metric(t, "apiperf_db_read_fallbacks_total", "reason", "down") > 0
	})
	err := s.Replicas().Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1: down") {
		t.Errorf("replicas readiness = %v, want it to name the replica as down", err)
	}
}

// TestOpen_ReadDSNs: bad replica settings stop Open with a ConfigError
// naming Config.ReadDSNs.
func TestOpen_ReadDSNs(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  storage.Config
		want string
	}{
		"SQLite":    {storage.Config{DataDir: t.TempDir(), ReadDSNs: []string{"root@tcp(127.0.0.1:3306)/x"}}, "Config.ReadDSNs: read replicas need a MySQL primary"},
		"Malformed": {storage.Config{MySQLDSN: testenv.MySQLDSN(t), ReadDSNs: []string{"root@tcp(127.0.0.1:3306/x"}}, "Config.ReadDSNs: "},
		"Twice": {storage.Config{MySQLDSN: testenv.MySQLDSN(t),
			ReadDSNs: []string{"root@tcp(10.0.0.1:3306)/x", "u@tcp(10.0.0.1:3306)/x"}}, "Config.ReadDSNs: 10.0.0.1:3306 is listed twice"},
	} {
		t.Run(name, func(t *testing.T) {
			db, err := storage.Open(context.Background(), c.cfg)
			if err == nil {
				db.Close()
			}
			var ce *storage.ConfigError
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &ce) || ce.Field != "ReadDSNs" {
				t.Fatalf("Open = %v, want a ConfigError for ReadDSNs containing %q", err, c.want)
			}
		})
	}
}
