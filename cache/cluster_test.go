package cache

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/testenv"
)

// TestRedisCluster_Cache runs the cache's cross-replica promises on a
// three-master Redis Cluster the test builds on loopback ports: one load
// per cold key across replicas (the lease), invalidation reaching every
// replica's client-side copy and near map, and negative caching. Each key's
// commands name only that key, inside a hash tag, so they route to its slot;
// the keys used spread over all three masters.
func TestRedisCluster_Cache(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Redis Cluster; skipped with -short")
	}
	verifyNoLeaks(t)
	addrs := testenv.StartRedisCluster(t)
	url := "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	prefix := testPrefix(t)

	var caches []*Redis
	for range 3 {
		c, err := NewClient(url, true, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewRedis(c, Options{Prefix: prefix, Logger: quietLogger(), Timeout: 2 * time.Second})
		if err != nil {
			c.Close()
			t.Fatal(err)
		}
		if r.near == nil {
			t.Fatal("no near map on a cluster client with client-side caching")
		}
		caches = append(caches, r)
		t.Cleanup(func() { r.Close(); c.Close() })
	}
	ctx := context.Background()

	masters := map[string]bool{}
	for k := range 12 {
		key := fmt.Sprintf("product:%d", k)
		src := newSource(key + "-v0")

		// Cold: 3 replicas x 10 concurrent readers, one load in all.
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() {
				if got, err := caches[i%3].Get(ctx, key, src.load); err != nil || string(got) != key+"-v0" {
					t.Errorf("%s: cold read %q, %v", key, got, err)
				}
			})
		}
		wg.Wait()
		if n := src.loads.Load(); n != 1 {
			t.Fatalf("%s: %d loads for 30 concurrent cold reads over 3 replicas, want 1", key, n)
		}
		for _, r := range caches { // warm every replica's copies
			mustGet(t, r, key, src.load)
			mustGet(t, r, key, src.load)
		}

		// A write through one replica reaches the other two.
		src.set(key + "-v1")
		if err := caches[k%3].Invalidate(ctx, key); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, caches[k%3], key, src.load); got != key+"-v1" {
			t.Fatalf("%s: the writing replica reads %q after its own Invalidate", key, got)
		}
		deadline := time.Now().Add(2 * time.Second)
		for i, r := range caches {
			for mustGet(t, r, key, src.load) != key+"-v1" {
				if time.Now().After(deadline) {
					t.Fatalf("%s: replica %d still serves the old value 2s after Invalidate", key, i)
				}
				time.Sleep(time.Millisecond)
			}
		}
		masters[keyOwner(t, caches[0], key)] = true
	}
	if len(masters) != 3 {
		t.Fatalf("the test keys reached %d masters, want all 3", len(masters))
	}

	// An absence is remembered across replicas.
	loads := 0
	missing := func(context.Context, string) ([]byte, error) {
		loads++
		return nil, apiperf.Errorf(apiperf.ENOTFOUND, "product 404 not found")
	}
	for _, r := range caches {
		if _, err := r.Get(ctx, "product:404", missing); apiperf.ErrorCode(err) != apiperf.ENOTFOUND {
			t.Fatalf("Get of an absent key = %v, want ENOTFOUND", err)
		}
	}
	if loads != 1 {
		t.Fatalf("%d loads of an absent key over 3 replicas, want 1", loads)
	}
}

// keyOwner returns the address of the cluster node that holds key's Redis
// key, found by asking each node whether it has it.
func keyOwner(t *testing.T, r *Redis, key string) string {
	t.Helper()
	rkey := r.redisKey(key)
	for addr, n := range r.client.Nodes() {
		ok, err := n.Do(context.Background(), n.B().Exists().Key(rkey).Build()).AsInt64()
		if err == nil && ok == 1 {
			return addr
		}
	}
	t.Fatalf("no node holds %s", rkey)
	return ""
}
