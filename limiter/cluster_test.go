package limiter

import (
	"context"
	"strconv"
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
