package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// Local is the in-process Cache of the embedded default (no Redis). It keeps
// the Redis implementation's promises within one process, through the same
// protocol: TTL and negative TTL, one load per key at a time, and no value
// loaded before an Invalidate stored after it. It does not know about other
// processes, so it only suits a single replica.
type Local struct {
	opts  Options
	m     *metrics
	proto *protocol[*localEntry]

	// entries maps a key to its *localEntry. sync.Map reads take no lock,
	// which keeps parallel hits from contending on a mutex.
	entries  sync.Map
	size     atomic.Int64 // entries in the map, leases included
	evicting atomic.Bool

	// clock is read by hits; entries may outlive their TTL by up to one
	// of its steps. Its goroutine also sweeps expired entries.
	clock     coarseClock
	lastSweep int64 // touched by the clock's goroutine only
}

// localEntry is immutable once in the map: a change replaces the pointer, so
// compare-and-swap on the pointer is compare-and-set on the content. A lease
// is an entry of its own (its identity is the lease).
type localEntry struct {
	outcome
	lease   bool
	expires int64 // coarseClock nanoseconds; unused for a lease
}

var (
	_ Cache                   = (*Local)(nil)
	_ leaseStore[*localEntry] = (*Local)(nil)
)

// sweepEvery is how often, at most, Local drops expired entries, so that
// keys read once (a flood of unknown ids, say) do not stay in memory.
const sweepEvery = time.Second

// NewLocal returns an in-process cache and starts the goroutine of its
// clock, which also drops expired entries; Close stops it. Options.Prefix,
// Timeout and RetryInterval do not apply. It fails on Options that
// withDefaults rejects and on metrics that cannot be registered (see
// promreg), as NewRedis does.
func NewLocal(opts Options) (*Local, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	shortest := opts.TTL
	if opts.negativeEnabled() {
		shortest = min(shortest, opts.NegativeTTL)
	}
	l := &Local{opts: opts, m: m}
	l.proto = newProtocol(l, m, &l.opts)
	l.clock.start(min(max(shortest/20, time.Millisecond), 100*time.Millisecond), l.sweep)
	return l, nil
}

// Get implements Cache. A hit takes no lock and does not allocate.
func (l *Local) Get(ctx context.Context, key string, load apiperf.LoadFunc) ([]byte, error) {
	if v, ok := l.entries.Load(key); ok {
		e := v.(*localEntry)
		if !e.lease && l.clock.coarse() < e.expires {
			if e.absent {
				l.m.negativeHit.Inc()
			} else {
				l.m.clientHit.Inc()
			}
			return e.result()
		}
	}
	l.m.miss.Inc()
	return l.proto.miss(ctx, key, key, load, true)
}

// acquire implements leaseStore: it puts a new lease in the map unless the
// key holds a live value or absence. A lease left by another flight is
// taken over; that flight's settle then finds its lease lost.
func (l *Local) acquire(_ context.Context, key string) (*localEntry, outcome, bool, string) {
	lease := &localEntry{lease: true}
	for {
		v, loaded := l.entries.LoadOrStore(key, lease)
		if !loaded {
			if l.size.Add(1) > int64(l.opts.MaxEntries) {
				l.evict()
			}
			return lease, outcome{}, false, ""
		}
		e := v.(*localEntry)
		if !e.lease && l.clock.precise() < e.expires {
			return nil, e.outcome, true, ""
		}
		if l.entries.CompareAndSwap(key, v, lease) {
			return lease, outcome{}, false, ""
		}
	}
}

// settle implements leaseStore.
func (l *Local) settle(_ context.Context, key string, lease *localEntry, o outcome) (lost bool) {
	ttl := l.opts.TTL
	if o.absent {
		ttl = l.opts.NegativeTTL
	}
	e := &localEntry{outcome: o, expires: l.clock.precise() + int64(ttl)}
	return !l.entries.CompareAndSwap(key, lease, e)
}

// release implements leaseStore.
func (l *Local) release(_ context.Context, key string, lease *localEntry) {
	if l.entries.CompareAndDelete(key, lease) {
		l.size.Add(-1)
	}
}

// Invalidate implements Cache. Deleting the entry also deletes a running
// load's lease, so that load cannot store what it read.
func (l *Local) Invalidate(_ context.Context, keys ...string) error {
	for _, key := range keys {
		if _, loaded := l.entries.LoadAndDelete(key); loaded {
			l.size.Add(-1)
		}
		l.proto.forget(key)
	}
	return nil
}

// Close implements Cache: it stops the clock and the sweeping. Later Gets
// still work, on the precise clock, but expired entries are no longer
// swept.
func (l *Local) Close() { l.clock.close() }

// sweep runs on every tick of the clock and drops expired entries at most
// once per sweepEvery.
func (l *Local) sweep(now int64) {
	if now-l.lastSweep < int64(sweepEvery) {
		return
	}
	l.lastSweep = now
	l.entries.Range(func(k, v any) bool {
		if e := v.(*localEntry); !e.lease && now >= e.expires {
			if l.entries.CompareAndDelete(k, v) {
				l.size.Add(-1)
			}
		}
		return true
	})
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
		if !v.(*localEntry).lease && l.entries.CompareAndDelete(k, v) {
			l.size.Add(-1)
		}
		return l.size.Load() > target
	})
}
