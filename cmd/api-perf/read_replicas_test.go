package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/api-perf/api-perf/internal/testenv"
)

// TestReadReplicas runs the program against a private MariaDB primary and
// a GTID replica of it (one pair shared by the cases, which run one after
// the other and leave it healed):
//
//  1. lists are read on the replica: its Com_select grows, the primary's
//     does not;
//  2. with the replica's SQL thread stopped, a GET /products/{id} right
//     after an acknowledged PATCH shows the new version, on the writing
//     process and on another one sharing Redis; lists show a new product
//     once the lag passes MYSQL_READ_MAX_LAG (they move to the primary);
//  3. the replica killed with SIGKILL under list load costs no 5xx, and
//     once restarted it takes reads again.
func TestReadReplicas(t *testing.T) {
	t.Run("ListsOnReplica", testReplicaLists)
	t.Run("ReadYourWritesWhileLagging", testReplicaReadYourWrites)
	t.Run("KilledUnderLoad", testReplicaKilledUnderLoad)
}

// replicaVars is the environment of a process reading lists from the
// pair's replica, sharing Redis with the other processes of the test.
func replicaVars(t *testing.T, pair *testenv.ReplicaPair) (vars map[string]string, dbName string) {
	t.Helper()
	primary, replica := pair.Database(t)
	c, err := mysql.ParseDSN(primary)
	if err != nil {
		t.Fatal(err)
	}
	vars = sharedBackends(t, "redis://"+testenv.RedisAddr())
	vars["MYSQL_DSN"], vars["MYSQL_READ_DSN"] = primary, replica
	return vars, c.DBName
}

// startWithReplica serves vars in process and waits until its replica
// takes list reads (the migrations have reached it, and it is checked).
func startWithReplica(t *testing.T, pair *testenv.ReplicaPair, vars map[string]string) string {
	t.Helper()
	base, _ := startRun(t, copyVars(vars))
	if err := pair.WaitReplicated(context.Background(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitReplicasReady(t, base, "ok")
	return base
}

func copyVars(vars map[string]string) map[string]string {
	out := make(map[string]string, len(vars))
	for k, v := range vars {
		out[k] = v
	}
	return out
}

// readiness is /readyz's status, overall and of the replicas check.
func readiness(t *testing.T, base string) (status int, overall, replicas string) {
	t.Helper()
	status, body := call(t, "GET", base+"/readyz", "")
	var r struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz: %d %s", status, body)
	}
	return status, r.Status, r.Checks["replicas"]
}

// waitReplicasReady waits until /readyz reports the replicas check as
// want ("ok" or "degraded"), always with a 200.
func waitReplicasReady(t *testing.T, base, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, replicas := readiness(t, base)
		if status != 200 {
			t.Fatalf("/readyz answered %d; replicas must never make the service unready", status)
		}
		if replicas == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz reports the replicas %q after 20s, want %q", replicas, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func comSelectOf(t *testing.T, s interface {
	Status(context.Context, string) (int64, error)
}) int64 {
	t.Helper()
	n, err := s.Status(context.Background(), "Com_select")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// productIDs lists the ids of GET /products?limit=100.
func productIDs(t *testing.T, base string) []int64 {
	t.Helper()
	status, body := call(t, "GET", base+"/products?limit=100", "")
	if status != 200 {
		t.Fatalf("GET /products: %d %s", status, body)
	}
	var page struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, p := range page.Items {
		ids = append(ids, p.ID)
	}
	return ids
}

type productBody struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

func createProduct(t *testing.T, base, name string) productBody {
	t.Helper()
	status, body := call(t, "POST", base+"/products", fmt.Sprintf(`{"name":%q,"price":1,"stock":100}`, name))
	if status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	var p productBody
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func getProduct(t *testing.T, base string, id int64) productBody {
	t.Helper()
	status, body := call(t, "GET", fmt.Sprintf("%s/products/%d", base, id), "")
	if status != 200 {
		t.Fatalf("GET /products/%d: %d %s", id, status, body)
	}
	var p productBody
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func testReplicaLists(t *testing.T) {
	pair := testenv.SharedReplicaPair(t)
	vars, _ := replicaVars(t, pair)
	base := startWithReplica(t, pair, vars)
	p := createProduct(t, base, "listed")
	if status, body := call(t, "POST", base+"/orders", fmt.Sprintf(`{"product_id":%d,"quantity":1}`, p.ID)); status != 201 {
		t.Fatalf("order: %d %s", status, body)
	}
	if err := pair.WaitReplicated(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitReplicasReady(t, base, "ok")

	primary0, replica0 := comSelectOf(t, pair.Primary), comSelectOf(t, pair.Replica)
	const n = 30
	for i := range n {
		if i%3 == 2 {
			if status, body := call(t, "GET", base+"/orders?status=pending", ""); status != 200 || !strings.Contains(body, `"product_id":`) {
				t.Fatalf("GET /orders: %d %s", status, body)
			}
		} else if ids := productIDs(t, base); !slices.Equal(ids, []int64{p.ID}) {
			t.Fatalf("GET /products lists %v, want [%d]", ids, p.ID)
		}
	}
	primary1, replica1 := comSelectOf(t, pair.Primary), comSelectOf(t, pair.Replica)
	t.Logf("%d list requests: Com_select +%d on the primary, +%d on the replica (which also answers its lag checks)",
		n, primary1-primary0, replica1-replica0)
	if primary1 != primary0 {
		t.Errorf("the primary ran %d SELECTs during %d list requests, want 0", primary1-primary0, n)
	}
	if replica1-replica0 < n {
		t.Errorf("the replica ran %d SELECTs during %d list requests, want at least %d", replica1-replica0, n, n)
	}
	series := fmt.Sprintf(`apiperf_db_reads_total{query="list",target=%q}`, pair.Replica.Addr())
	if got := metric(t, base, series); got != n {
		t.Errorf("%s = %v, want %d", series, got, n)
	}
}

func testReplicaReadYourWrites(t *testing.T) {
	ctx := context.Background()
	pair := testenv.SharedReplicaPair(t)
	vars, dbName := replicaVars(t, pair)
	vars["MYSQL_READ_MAX_LAG"] = "1s"
	a, b := startWithReplica(t, pair, vars), startWithReplica(t, pair, vars)
	p := createProduct(t, a, "before")
	if err := pair.WaitReplicated(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// A has the body cached, client-side and in Redis; B reads it only
	// after the write, so the body it gets is the fill's, not a copy
	// waiting for Redis's invalidation push.
	for range 3 {
		if got := getProduct(t, a, p.ID); got.Version != p.Version {
			t.Fatalf("warm-up read: %+v, want %+v", got, p)
		}
	}

	if err := pair.StopSQLThread(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Heal(t) })
	status, body := call(t, "PATCH", fmt.Sprintf("%s/products/%d", a, p.ID), `{"name":"after"}`)
	if status != 200 {
		t.Fatalf("PATCH: %d %s", status, body)
	}
	var patched productBody
	if err := json.Unmarshal([]byte(body), &patched); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, base string }{{"the writing process", a}, {"another process", b}, {"the writing process again", a}} {
		if got := getProduct(t, c.base, p.ID); got.Version != patched.Version || got.Name != "after" {
			t.Errorf("%s serves %+v right after the PATCH was acknowledged, want %+v", c.name, got, patched)
		}
	}
	// The replica does lag: a fill from it would have stored the old body.
	var onReplica string
	if err := pair.Replica.Admin().QueryRowContext(ctx, "SELECT name FROM `"+dbName+"`.products WHERE id = ?", p.ID).Scan(&onReplica); err != nil {
		t.Fatal(err)
	}
	if onReplica != "before" {
		t.Fatalf("the replica holds %q: it does not lag, so the test proves nothing", onReplica)
	}

	// A product created now is missing from lists read on the replica
	// until its lag passes MYSQL_READ_MAX_LAG; from then on lists are read
	// on the primary and show it.
	q := createProduct(t, a, "new")
	acked := time.Now()
	for {
		started := time.Now()
		ids := productIDs(t, b)
		has := slices.Contains(ids, q.ID)
		if !has && started.Sub(acked) >= time.Second {
			t.Fatalf("a list started %v after the create was acknowledged misses product %d: %v",
				started.Sub(acked).Round(time.Millisecond), q.ID, ids)
		}
		if has && started.Sub(acked) >= time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitReplicasReady(t, b, "degraded")
	if fb := metric(t, b, `apiperf_db_read_fallbacks_total{reason="lag"}`); fb == 0 {
		t.Error(`no list read counted as apiperf_db_read_fallbacks_total{reason="lag"}`)
	}
	if got := getProduct(t, b, p.ID); got.Version != patched.Version {
		t.Errorf("later, the other process serves %+v, want %+v", got, patched)
	}

	if err := pair.StartSQLThread(ctx); err != nil {
		t.Fatal(err)
	}
	waitReplicasReady(t, b, "ok")
}

func testReplicaKilledUnderLoad(t *testing.T) {
	pair := testenv.SharedReplicaPair(t)
	vars, _ := replicaVars(t, pair)
	base := startWithReplica(t, pair, vars)
	p := createProduct(t, base, "loaded")
	if status, body := call(t, "POST", base+"/orders", fmt.Sprintf(`{"product_id":%d,"quantity":1}`, p.ID)); status != 201 {
		t.Fatalf("order: %d %s", status, body)
	}
	if err := pair.WaitReplicated(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitReplicasReady(t, base, "ok")
	replicaReads := fmt.Sprintf(`apiperf_db_reads_total{query="list",target=%q}`, pair.Replica.Addr())

	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	stopLoad := func() {
		once.Do(func() { close(stop) })
		wg.Wait()
	}
	defer stopLoad()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := []string{"/products?limit=10", "/orders?limit=10"}[w%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := client.Get(base + path)
				if err == nil {
					io.Copy(io.Discard, res.Body) //nolint:errcheck
					res.Body.Close()
				}
				if err != nil || res.StatusCode != http.StatusOK {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v %v", path, err, res))
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitMetricGrows := func(what string, from float64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for metric(t, base, replicaReads) < from+20 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the replica took %v list reads in 20s", what, metric(t, base, replicaReads)-from)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMetricGrows("before the kill", metric(t, base, replicaReads))

	pair.Replica.Kill()
	killed := ok.Load()
	waitReplicasReady(t, base, "degraded")
	for ok.Load() < killed+50 {
		time.Sleep(10 * time.Millisecond)
	}
	if status, overall, _ := readiness(t, base); status != 200 || overall != "degraded" {
		t.Errorf("/readyz with the replica killed: %d %s, want 200 degraded", status, overall)
	}

	pair.Heal(t) // the same port and data; replication resumes by itself
	// Com_select first: of the 20 reads counted after the metric is read,
	// only those in flight then (one per load worker) can have run their
	// SELECT before it.
	before := comSelectOf(t, pair.Replica)
	restarted := metric(t, base, replicaReads)
	waitMetricGrows("after the restart", restarted)
	if got := comSelectOf(t, pair.Replica) - before; got < 20-4 {
		t.Errorf("the restarted replica's Com_select grew by %d while it took 20 list reads", got)
	}
	stopLoad()
	t.Logf("%d list requests answered 200 while the replica was killed and restarted, %d failed", ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed, e.g. %v", failed.Load(), failures[:min(5, len(failures))])
	}
}
