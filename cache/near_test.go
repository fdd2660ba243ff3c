package cache

import (
	"context"
	"testing"
	"time"
)

// TestNear_Interleavings drives the near map through the races it exists to
// lose safely: a value read before a drop and stored after it must not
// stay.
func TestNear_Interleavings(t *testing.T) {
	const far = int64(1) << 62
	n := newNear("p:", 3)

	// Read (epoch taken), then a drop, then the store: refused.
	e := n.epoch.Load()
	n.drop("a")
	n.put("a", e, []byte("old"), far)
	if v, ok := n.get("a", 0); ok {
		t.Fatalf("a value read before a drop was stored after it: %q", v)
	}

	// Read and store before the drop: the drop removes it.
	e = n.epoch.Load()
	n.put("a", e, []byte("v1"), far)
	if v, ok := n.get("a", 0); !ok || string(v) != "v1" {
		t.Fatalf("get after put = %q, %v", v, ok)
	}
	n.drop("a")
	if _, ok := n.get("a", 0); ok {
		t.Fatal("drop left the value")
	}

	// A drop of another key also refuses stores that raced with it (the
	// epoch is global): conservative, never stale.
	e = n.epoch.Load()
	n.drop("zzz")
	n.put("a", e, []byte("v2"), far)
	if _, ok := n.get("a", 0); ok {
		t.Fatal("store after an unrelated drop was kept")
	}

	// Expiry is checked against the clock passed in.
	n.put("b", n.epoch.Load(), []byte("vb"), 100)
	if _, ok := n.get("b", 99); !ok {
		t.Fatal("entry gone before it expired")
	}
	if _, ok := n.get("b", 100); ok {
		t.Fatal("entry served at its expiry")
	}

	// Full: the map starts over instead of growing past max.
	for _, k := range []string{"c", "d", "e"} {
		n.put(k, n.epoch.Load(), []byte(k), far)
	}
	if got := n.size.Load(); got > 3 {
		t.Fatalf("size %d past max 3", got)
	}
}

// TestNear_Pushes checks the mapping from pushed Redis keys to cache keys.
func TestNear_Pushes(t *testing.T) {
	const far = int64(1) << 62
	n := newNear("apiperf:c:", 100)
	fill := func() {
		for _, k := range []string{"1", "2", "3"} {
			n.put(k, n.epoch.Load(), []byte(k), far)
		}
	}
	held := func(k string) bool { _, ok := n.get(k, 0); return ok }

	fill()
	n.invalidated([]string{
		"apiperf:c:{1}",
		"other:{2}",     // another prefix: not ours
		"apiperf:c:{3",  // malformed: not ours
		"apiperf:c:{9}", // ours, not held
	})
	if held("1") || !held("2") || !held("3") {
		t.Fatalf("after a push for {1}: held 1=%v 2=%v 3=%v, want false true true", held("1"), held("2"), held("3"))
	}
	// nil: the connection was lost or Redis flushed everything.
	n.invalidated(nil)
	if held("2") || held("3") || n.size.Load() != 0 {
		t.Fatal("a nil push left entries")
	}
}

// TestRedis_NearMap checks the near map against a real Redis: it fills from
// DoCache, empties when the client's connection is lost (rueidis reports
// that as a nil invalidation), honours the TTL, and is absent without
// client-side caching.
func TestRedis_NearMap(t *testing.T) {
	verifyNoLeaks(t)
	ctx := context.Background()

	t.Run("connection lost", func(t *testing.T) {
		rs := MustOpenReplicas(t, 1, true, Options{})
		r := rs.caches[0]
		if r.near == nil {
			t.Fatal("no near map on a client with client-side caching")
		}
		src := newSource("v0")
		mustGet(t, r, "k", src.load) // loads and stores in Redis
		mustGet(t, r, "k", src.load) // reads through DoCache
		if _, ok := r.near.get("k", r.clock.coarse()); !ok {
			t.Fatal("a read through DoCache did not fill the near map")
		}
		id, err := r.client.Do(ctx, r.client.B().ClientId().Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		other := MustNewClient(t, testRedisAddr, false)
		defer other.Close()
		if err := other.Do(ctx, other.B().ClientKill().Id(id).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "the near map to empty after the connection was killed", func() bool {
			_, ok := r.near.get("k", r.clock.coarse())
			return !ok
		})
		// The client reconnects by itself and the key is served again.
		if got := mustGet(t, r, "k", src.load); got != "v0" {
			t.Fatalf("after reconnect: %q", got)
		}
	})

	t.Run("TTL", func(t *testing.T) {
		// Long enough that a busy machine does not let it pass between the
		// first two reads.
		rs := MustOpenReplicas(t, 1, true, Options{TTL: time.Second})
		r := rs.caches[0]
		src := newSource("v0")
		mustGet(t, r, "k", src.load)
		mustGet(t, r, "k", src.load)
		if n := src.loads.Load(); n != 1 {
			t.Fatalf("%d loads before the TTL, want 1", n)
		}
		time.Sleep(1200 * time.Millisecond)
		mustGet(t, r, "k", src.load)
		if n := src.loads.Load(); n != 2 {
			t.Fatalf("%d loads after the TTL, want 2: the near map outlived it", n)
		}
	})

	t.Run("client-side caching off", func(t *testing.T) {
		rs := MustOpenReplicas(t, 1, false, Options{})
		if rs.caches[0].near != nil {
			t.Fatal("a near map without client-side caching: nothing would invalidate it")
		}
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
