package limiter

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/api-perf/api-perf/internal/testenv"

	"github.com/redis/rueidis"

	apiperf "github.com/api-perf/api-perf"
)

// TestRedisCluster_Exactness runs the exactness check on a three-master
// Redis Cluster the test builds on loopback ports. The limiter's key carries
// a hash tag, so the script's only key routes to one slot; the clients
// below are cluster clients that follow the slot map.
func TestRedisCluster_Exactness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Redis Cluster; skipped with -short")
	}
	verifyNoLeaks(t)
	addrs := testenv.StartRedisCluster(t)

	for _, mode := range append(redisModes, debtModes...) {
		t.Run(mode.name, func(t *testing.T) {
			limiters, prefix := replicaLimiters(t, mode.opts, addrs...)
			exactness(t, limiters, "client-a", slack(mode.opts, len(limiters), exactnessBurst))

			// Clients whose keys hash to every master are limited alike.
			c := MustClient(t, addrs...)
			nodes := map[string]bool{}
			p := apiperf.RatePolicy{Name: "write", Rate: 1, Period: time.Hour, Burst: 3}
			for _, client := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
				key := prefix + "{write:" + client + "}"
				slot, err := c.Do(context.Background(), c.B().ClusterKeyslot().Key(key).Build()).AsInt64()
				if err != nil {
					t.Fatalf("CLUSTER KEYSLOT: %v", err)
				}
				nodes[slotOwner(t, c, slot)] = true
				n := 0
				for i := range 5 {
					if mustAllow(t, limiters[i%3], client, p, 1).Allowed {
						n++
					}
				}
				if n != 3 {
					t.Fatalf("client %s: allowed %d of 5 with burst 3", client, n)
				}
			}
			if len(nodes) != 3 {
				t.Fatalf("the test keys reached %d masters, want all 3", len(nodes))
			}
		})
	}
}

// TestRedisCluster_Coalesce runs the coalescing checks on a three-master
// Cluster, where a batch is a pipeline of calls to several masters.
func TestRedisCluster_Coalesce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Redis Cluster; skipped with -short")
	}
	verifyNoLeaks(t)
	coalesced(t, true, testenv.StartRedisCluster(t)...)
}

// TestRedisCluster_Debt runs the checks of allowing on debt on a
// three-master Cluster.
func TestRedisCluster_Debt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Redis Cluster; skipped with -short")
	}
	verifyNoLeaks(t)
	debt(t, testenv.StartRedisCluster(t)...)
}

// slotOwner returns the address of the master serving slot.
func slotOwner(t *testing.T, c rueidis.Client, slot int64) string {
	t.Helper()
	ranges, err := c.Do(context.Background(), c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, r := range ranges {
		fields, _ := r.ToArray()
		if len(fields) < 3 {
			continue
		}
		lo, _ := fields[0].AsInt64()
		hi, _ := fields[1].AsInt64()
		if slot < lo || slot > hi {
			continue
		}
		master, _ := fields[2].ToArray()
		if len(master) < 2 {
			break
		}
		host, _ := master[0].ToString()
		port, _ := master[1].AsInt64()
		return host + ":" + strconv.FormatInt(port, 10)
	}
	t.Fatalf("no master serves slot %d", slot)
	return ""
}

// TestRedisCluster_ChargeFollowsMigratedSlot: a flush's charges go out as
// one EVALSHA pipeline; when a client's slot has moved to another master
// meanwhile (MOVED), or is moving with its key already gone (ASK), the
// charge follows it and lands once: the TAT on the new owner counts every
// unit, none lost, none twice.
func TestRedisCluster_ChargeFollowsMigratedSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Redis Cluster; skipped with -short")
	}
	verifyNoLeaks(t)
	addrs := testenv.StartRedisCluster(t)
	ctx := context.Background()
	c := MustClient(t, addrs...)
	p := apiperf.RatePolicy{Name: "read", Rate: 10, Period: time.Hour, Burst: 100}
	nodes := c.Nodes()
	ids := map[string]string{}
	for addr, n := range nodes {
		id, err := n.Do(ctx, n.B().ClusterMyid().Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		ids[addr] = id
	}
	do := func(addr string, args ...string) {
		t.Helper()
		n := nodes[addr]
		if err := n.Do(ctx, n.B().Arbitrary(args[0]).Args(args[1:]...).Build()).Error(); err != nil {
			t.Fatalf("%s %v: %v", addr, args, err)
		}
	}
	for _, ask := range []bool{false, true} {
		name := map[bool]string{false: "Moved", true: "Asked"}[ask]
		t.Run(name, func(t *testing.T) {
			prefix := MustPrefix(t, c)
			r := newRedis(t, MustClient(t, addrs...), RedisOptions{Prefix: prefix, Debt: 8, DebtDelay: time.Hour})
			defer r.Close()
			if err := r.Preload(ctx); err != nil {
				t.Fatal(err)
			}
			// Six clients, each with 3 units of debt waiting for the flush;
			// the last one's slot moves.
			moving := name + "5"
			for i := range 6 {
				for range 4 {
					mustAllow(t, r, name+strconv.Itoa(i), p, 1)
				}
			}
			r.wg.Wait()
			key := prefix + "{read:" + moving + "}"
			slot, err := c.Do(ctx, c.B().ClusterKeyslot().Key(key).Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			src, dst := slotOwner(t, c, slot), ""
			for addr := range nodes {
				if addr != src {
					dst = addr
					break
				}
			}
			s := strconv.FormatInt(slot, 10)
			do(dst, "CLUSTER", "SETSLOT", s, "IMPORTING", ids[src])
			do(src, "CLUSTER", "SETSLOT", s, "MIGRATING", ids[dst])
			host, port, _ := strings.Cut(dst, ":")
			do(src, "MIGRATE", host, port, "", "0", "5000", "KEYS", key)
			assign := func() {
				for addr := range nodes {
					do(addr, "CLUSTER", "SETSLOT", s, "NODE", ids[dst])
				}
			}
			if !ask {
				assign()
			}
			// One flusher, held on a request's call while the flush
			// queues the six charges: they go out as one pipeline.
			r.co.maxFlushers = 1
			entered, gate := make(chan struct{}), make(chan struct{})
			var once sync.Once
			r.co.beforeFlush = func() {
				once.Do(func() {
					close(entered)
					<-gate
				})
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				if _, err := r.Allow(ctx, "holder", p, 1); err != nil {
					t.Error(err)
				}
			})
			<-entered
			r.debts.flush(r)
			close(gate)
			wg.Wait()
			r.wg.Wait()
			if ask {
				assign()
			}
			for i := range 6 {
				b := r.bucket("read", name+strconv.Itoa(i), false)
				b.mu.Lock()
				owed := b.owed + b.owing
				b.mu.Unlock()
				if owed != 0 {
					t.Fatalf("client %d: %d owed after the flush", i, owed)
				}
			}
			n := nodes[dst]
			v, err := n.Do(ctx, n.B().Get().Key(key).Build()).ToString()
			if err != nil {
				t.Fatalf("GET %s on the new owner: %v", key, err)
			}
			tat, _ := strconv.ParseInt(v, 10, 64)
			if a := float64(tat-redisTimeMicros(t, c)) / float64(p.Interval().Microseconds()); a < 3.9 || a > 4 {
				t.Fatalf("the moved client's TAT is %.2f intervals ahead on the new owner, want 4 (1 decided, 3 charged once)", a)
			}
		})
	}
}
