package cache

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	apiperf "github.com/api-perf/api-perf"
)

// Local is the in-process Cache of the embedded default (no Redis). It keeps
// the Redis implementation's promises within one process: TTL and negative
// TTL, one load per key at a time, and no value loaded before an Invalidate
// stored after it. It does not know about other processes, so it only suits
// a single replica.
type Local struct {
	opts  Options
	m     *metrics
	group singleflight.Group

	// entries maps a key to its *localEntry. sync.Map reads take no lock,
	// which keeps parallel hits from contending on a mutex.
	entries  sync.Map
	size     atomic.Int64 // entries in the map, leases included
	evicting atomic.Bool

	// now is a coarse clock (nanoseconds since base) that the sweeping
	// goroutine advances every tick, so that a hit does not read the real
	// clock: that costs more than the rest of a hit on some virtual
	// machines. Entries may outlive their TTL by up to one tick.
	base time.Time
	now  atomic.Int64
	tick time.Duration

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// localEntry is immutable once in the map: a change replaces the pointer, so
// compare-and-swap on the pointer is compare-and-set on the content.
type localEntry struct {
	kind    byte // tagValue, tagNegative or tagLease
	val     []byte
	msg     string // the not-found message of a tagNegative entry
	expires int64  // nanoseconds since Local.base
}

var _ Cache = (*Local)(nil)

// NewLocal returns an in-process cache and starts the goroutine that drops
// expired entries; Close stops it. Options.Prefix, Timeout and RetryInterval
// do not apply. It panics on Options that withDefaults rejects or metrics
// that cannot be registered: both are wiring mistakes, not runtime
// conditions.
func NewLocal(opts Options) *Local {
	opts, err := opts.withDefaults()
	if err != nil {
		panic(err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		panic(err)
	}
	shortest := opts.TTL
	if opts.negativeEnabled() {
		shortest = min(shortest, opts.NegativeTTL)
	}
	l := &Local{
		opts: opts, m: m, stop: make(chan struct{}), done: make(chan struct{}),
		base: time.Now(), tick: min(max(shortest/20, time.Millisecond), 100*time.Millisecond),
	}
	go l.sweep()
	return l
}

// Get implements Cache. A hit takes no lock and does not allocate.
func (l *Local) Get(ctx context.Context, key string, load apiperf.LoadFunc) ([]byte, error) {
	if v, ok := l.entries.Load(key); ok {
		e := v.(*localEntry)
		if e.kind != tagLease && l.now.Load() < e.expires {
			if e.kind == tagValue {
				l.m.clientHit.Inc()
				return e.val, nil
			}
			l.m.negativeHit.Inc()
			return nil, notFound(e.msg)
		}
	}
	l.m.miss.Inc()
	v, err, _ := l.group.Do(key, func() (any, error) { return l.fill(ctx, key, bind(load, key)) })
	b, _ := v.([]byte)
	return b, err
}

// fill loads a missing key under a lease entry and stores the result only if
// the lease is still in the map, that is, if no Invalidate ran meanwhile.
func (l *Local) fill(ctx context.Context, key string, load loader) ([]byte, error) {
	for loads := 0; ; {
		lease := &localEntry{kind: tagLease}
		if e := l.acquire(key, lease); e != nil {
			// Stored by a load that an Invalidate detached from the
			// singleflight group; it is fresh, use it.
			if e.kind == tagValue {
				return e.val, nil
			}
			return nil, notFound(e.msg)
		}
		val, lerr := l.load(ctx, load)
		loads++
		if l.store(key, lease, val, lerr) || loads >= maxAttempts {
			l.m.load(lerr)
			return val, lerr
		}
		// Invalidated while loading: what the loader read may be older than
		// the write, so read again.
		if lerr == nil {
			l.m.loadDiscarded.Inc()
		} else {
			l.m.load(lerr)
		}
	}
}

// load calls the loader with the first caller's values but not its
// cancellation, bounded by LeaseTTL (see LoadFunc).
func (l *Local) load(ctx context.Context, load loader) ([]byte, error) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.LeaseTTL)
	defer cancel()
	return load(lctx)
}

// acquire puts lease in the map unless the key holds a live value or
// absence, which it then returns. A lease left by another flight is taken
// over; that flight's store then fails and it loads again.
func (l *Local) acquire(key string, lease *localEntry) *localEntry {
	for {
		v, loaded := l.entries.LoadOrStore(key, lease)
		if !loaded {
			if l.size.Add(1) > int64(l.opts.MaxEntries) {
				l.evict()
			}
			return nil
		}
		e := v.(*localEntry)
		if e.kind != tagLease && l.clock() < e.expires {
			return e
		}
		if l.entries.CompareAndSwap(key, v, lease) {
			return nil
		}
	}
}

// store replaces lease with the load's result. It reports false only when
// the lease is gone (the key was invalidated) and the result may be stale.
// Errors other than ENOTFOUND are not cached: the lease is removed.
func (l *Local) store(key string, lease *localEntry, val []byte, lerr error) bool {
	var e *localEntry
	switch {
	case lerr == nil:
		e = &localEntry{kind: tagValue, val: val, expires: l.clock() + int64(l.opts.TTL)}
	case isNotFound(lerr) && l.opts.negativeEnabled():
		e = &localEntry{kind: tagNegative, msg: message(lerr), expires: l.clock() + int64(l.opts.NegativeTTL)}
	default:
		if l.entries.CompareAndDelete(key, lease) {
			l.size.Add(-1)
		}
		return true
	}
	return l.entries.CompareAndSwap(key, lease, e)
}

// Invalidate implements Cache. Deleting the entry also deletes a running
// load's lease, so that load cannot store what it read.
func (l *Local) Invalidate(_ context.Context, keys ...string) error {
	for _, key := range keys {
		if _, loaded := l.entries.LoadAndDelete(key); loaded {
			l.size.Add(-1)
		}
		l.group.Forget(key)
	}
	return nil
}

// Close implements Cache: it stops the sweeping goroutine. Later Gets still
// work, on the real clock, but expired entries are no longer swept.
func (l *Local) Close() {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		// With the coarse clock stopped, every entry looks expired to the
		// hit path and acquire decides on the real clock.
		l.now.Store(math.MaxInt64)
	})
}

// clock reads the real clock, as nanoseconds since base.
func (l *Local) clock() int64 { return int64(time.Since(l.base)) }

// sweep advances the coarse clock every tick and drops expired entries about
// once a second, so that keys read once (a flood of unknown ids, say) do not
// stay in memory.
func (l *Local) sweep() {
	defer close(l.done)
	t := time.NewTicker(l.tick)
	defer t.Stop()
	lastSweep := l.clock()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		now := l.clock()
		l.now.Store(now)
		if now-lastSweep < int64(time.Second) {
			continue
		}
		lastSweep = now
		l.entries.Range(func(k, v any) bool {
			if e := v.(*localEntry); e.kind != tagLease && now >= e.expires {
				if l.entries.CompareAndDelete(k, v) {
					l.size.Add(-1)
				}
			}
			return true
		})
	}
}

// evict drops arbitrary entries (map order) until the map is a tenth below
// MaxEntries. Leases stay: their loads are running. One goroutine evicts at a
// time; the others carry on.
func (l *Local) evict() {
	if !l.evicting.CompareAndSwap(false, true) {
		return
	}
	defer l.evicting.Store(false)
	target := int64(l.opts.MaxEntries) * 9 / 10
	l.entries.Range(func(k, v any) bool {
		if v.(*localEntry).kind != tagLease && l.entries.CompareAndDelete(k, v) {
			l.size.Add(-1)
		}
		return l.size.Load() > target
	})
}
