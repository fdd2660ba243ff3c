package limiter

import (
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// tableShards spreads buckets over independent locks so that concurrent
// requests from different clients rarely wait for each other.
const tableShards = 64

// sweepEvery is how often, at most, a shard forgets the entries that hold
// nothing worth keeping. Such an entry is indistinguishable from one never
// made, so forgetting it changes no decision; it only bounds memory.
const sweepEvery = 10 * time.Second

// table is the in-process map of buckets that Local (one TAT per bucket)
// and Redis (its reservations per bucket) both keep, keyed by
// appendBucketID. The caller locks a shard for as long as its decision
// needs the shard's map.
type table[V idler] struct {
	shards [tableShards]tableShard[V]
}

// idler is an entry of a table: idle reports, at now (in the units of the
// caller's clock), that the entry holds nothing worth keeping.
type idler interface{ idle(now int64) bool }

type tableShard[V idler] struct {
	mu        sync.Mutex
	m         map[string]V
	lastSweep int64
	lastFull  int64    // when a full shard was last swept to make room
	_         [32]byte // keeps neighbouring shard locks off one cache line
}

// init makes the shards' maps; a table is used in place, not copied.
func (t *table[V]) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[string]V)
	}
}

// shard returns the shard of the bucket id.
func (t *table[V]) shard(id []byte) *tableShard[V] {
	return &t.shards[xxhash.Sum64(id)%tableShards]
}

// sweep forgets the idle entries, at most once per every (both in the units
// of now). The caller holds sh.mu.
func (sh *tableShard[V]) sweep(now, every int64) {
	if now-sh.lastSweep < every {
		return
	}
	sh.lastSweep = now
	sh.forgetIdle(now)
}

// forgetIdle deletes the idle entries. The caller holds sh.mu.
func (sh *tableShard[V]) forgetIdle(now int64) {
	for k, v := range sh.m {
		if v.idle(now) {
			delete(sh.m, k)
		}
	}
}

// room reports whether the shard may take one more entry under a cap of
// max entries per shard (0: no cap). A full shard is swept to make room,
// at most once per every; the entries in use stay, so a shard full of
// active clients stays full. The caller holds sh.mu.
func (sh *tableShard[V]) room(max int, now, every int64) bool {
	if max == 0 || len(sh.m) < max {
		return true
	}
	if now-sh.lastFull >= every {
		sh.lastFull, sh.lastSweep = now, now
		sh.forgetIdle(now)
	}
	return len(sh.m) < max
}

// clear forgets every entry.
func (t *table[V]) clear() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// len counts the entries held, for tests and the clients gauge.
func (t *table[V]) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
