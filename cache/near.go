package cache

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"
)

// near is the Redis cache's first level: a map in process memory in front
// of rueidis's client-side cache, holding the values DoCache returned. A
// client-side hit through rueidis still builds a command, takes the
// connection's cache lock and formats the Redis key; a near hit is one map
// read. It is only as fresh as the client-side cache behind it, because
// Redis's invalidation pushes reach it through the client's
// OnInvalidations callback, which rueidis calls after it has dropped its
// own copy (see NewClient).
//
// The race that matters is a value read just before an invalidation and
// stored just after it. Every drop first advances epoch and then deletes
// under mu; a store happens under mu only if epoch has not moved since
// before its read. So a store either comes before the drop, which then
// deletes it, or sees the new epoch and gives up.
type near struct {
	entries sync.Map // cache key → *nearEntry; reads take no lock
	mu      sync.Mutex
	epoch   atomic.Uint64
	size    atomic.Int64
	max     int64
	prefix  string // the Redis key prefix, to map pushed keys back
}

// nearEntry is immutable once stored.
type nearEntry struct {
	val     []byte
	expires int64 // Unix nanoseconds
}

func newNear(prefix string, maxEntries int) *near {
	return &near{prefix: prefix, max: int64(maxEntries)}
}

// get returns key's value when it is held and has not expired at now
// (Unix nanoseconds).
func (n *near) get(key string, now int64) ([]byte, bool) {
	v, ok := n.entries.Load(key)
	if !ok {
		return nil, false
	}
	e := v.(*nearEntry)
	return e.val, now < e.expires
}

// put stores val unless a drop happened since epoch was read (before the
// read that produced val). A map that grows past max starts over. The key
// is kept, so it must not alias a reused buffer.
func (n *near) put(key string, epoch uint64, val []byte, expires int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.epoch.Load() != epoch {
		return
	}
	if _, loaded := n.entries.Swap(key, &nearEntry{val: val, expires: expires}); !loaded {
		if n.size.Add(1) > n.max {
			// Full: start over rather than track recency on the hit path.
			// The values are still one DoCache away.
			n.clearLocked()
		}
	}
}

// drop removes keys (cache keys, not Redis keys).
func (n *near) drop(keys ...string) {
	n.epoch.Add(1)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, key := range keys {
		if _, ok := n.entries.LoadAndDelete(key); ok {
			n.size.Add(-1)
		}
	}
}

// dropAll empties the map.
func (n *near) dropAll() {
	n.epoch.Add(1)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.clearLocked()
}

func (n *near) clearLocked() {
	n.entries.Clear()
	n.size.Store(0)
}

// invalidated handles one invalidation push: the Redis keys that changed,
// or nil when everything must go (FLUSHALL, or the connection was lost).
func (n *near) invalidated(rkeys []string) {
	if rkeys == nil {
		n.dropAll()
		return
	}
	keys := make([]string, 0, len(rkeys))
	for _, rkey := range rkeys {
		// Redis keys are prefix + "{" + key + "}"; others are not ours.
		if rest, ok := strings.CutPrefix(rkey, n.prefix+"{"); ok && strings.HasSuffix(rest, "}") {
			keys = append(keys, rest[:len(rest)-1])
		}
	}
	if len(keys) > 0 {
		n.drop(keys...)
	}
}

// invalidations fans a client's invalidation pushes out to the near maps of
// every Redis cache built on it. NewClient makes one per client that has
// client-side caching and sets its notify as the OnInvalidations callback.
type invalidations struct {
	mu   sync.RWMutex
	subs map[*near]struct{}
}

// trackedClient is the client NewClient returns when it has client-side
// caching: the rueidis client itself plus the fan-out of its invalidation
// pushes, which NewRedis subscribes to. Caches on clients made elsewhere run
// without a near map.
type trackedClient struct {
	rueidis.Client
	pushes *invalidations
}

// notify is the OnInvalidations callback. rueidis calls it from the
// connection's reading goroutine after dropping its own copies, with nil
// when everything is dropped.
func (h *invalidations) notify(msgs []rueidis.RedisMessage) {
	var rkeys []string
	if msgs != nil {
		rkeys = make([]string, 0, len(msgs))
		for _, m := range msgs {
			rkey, err := m.ToString()
			if err != nil {
				rkeys = nil // unreadable: drop everything
				break
			}
			rkeys = append(rkeys, rkey)
		}
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for n := range h.subs {
		n.invalidated(rkeys)
	}
}

func (h *invalidations) subscribe(n *near) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = make(map[*near]struct{})
	}
	h.subs[n] = struct{}{}
}

func (h *invalidations) unsubscribe(n *near) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, n)
}
