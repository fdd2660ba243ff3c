package cache

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/singleflight"

	apiperf "github.com/api-perf/api-perf"
)

// The cache-aside protocol, written once for Local and Redis. A Get that
// misses joins this process's one flight for the key; the flight
//
//  1. takes the key's lease, or finds what another flight stored meanwhile;
//  2. calls the loader with the first caller's values but not its
//     cancellation (one caller going away must not fail the others),
//     bounded by LeaseTTL;
//  3. replaces its lease with the result, compare-and-set: an Invalidate
//     that ran during the load deleted the lease, so the result may predate
//     the write, is not stored, and the flight loads again (at most
//     maxAttempts loads in all).
//
// What differs between the two caches is where keys live, which is the
// leaseStore each passes to newProtocol. Redis can also fail, and then the
// flight loads without it: the loader's result is returned, never stored.

// outcome is what a load produced or a key holds: a value, or the absence
// the loader reported (ENOTFOUND), with its client-safe message so that a
// remembered absence reads like the original one.
type outcome struct {
	val    []byte
	absent bool
	msg    string
}

// result returns the outcome as Get does.
func (o *outcome) result() ([]byte, error) {
	if o.absent {
		return nil, notFound(o.msg)
	}
	return o.val, nil
}

// leaseStore is where a cache keeps its keys, as the protocol uses them.
// id is the key's identity in the store (the Redis key, or the cache key
// for Local); L is the store's lease (a token, or a map entry). ctx is the
// first caller's, for its values (the trace span); the store bounds its
// calls by its own deadline.
type leaseStore[L any] interface {
	// acquire takes the lease on id, or returns what id holds now (found).
	// A non-empty bypass says why the store cannot take part (a value of
	// apiperf_cache_fallbacks_total{reason}): the flight then loads and
	// stores nothing.
	acquire(ctx context.Context, id string) (lease L, held outcome, found bool, bypass string)
	// settle replaces lease with o, unless lease is no longer in place:
	// then it reports lost, and o may predate the write that removed it.
	settle(ctx context.Context, id string, lease L, o outcome) (lost bool)
	// release removes lease, if still in place, after a load whose result
	// is not to be kept (an error, a panic), so nobody waits on it.
	release(ctx context.Context, id string, lease L)
}

// protocol runs the flights of one cache.
type protocol[L any] struct {
	store    leaseStore[L]
	m        *metrics
	leaseTTL time.Duration
	negative bool // absences are remembered
	group    singleflight.Group
}

func newProtocol[L any](store leaseStore[L], m *metrics, opts *Options) *protocol[L] {
	return &protocol[L]{store: store, m: m, leaseTTL: opts.LeaseTTL, negative: opts.negativeEnabled()}
}

// miss runs key's miss in this process's one flight for id, and returns
// what the flight returned. With useStore false (the caller found the
// store failing, and counted that), the flight only loads.
func (p *protocol[L]) miss(ctx context.Context, id, key string, load apiperf.LoadFunc, useStore bool) ([]byte, error) {
	v, err, _ := p.group.Do(id, func() (any, error) { return p.fill(ctx, id, key, load, useStore) })
	b, _ := v.([]byte)
	return b, err
}

// forget makes later misses of id start a new flight instead of joining
// one that began before a write.
func (p *protocol[L]) forget(id string) { p.group.Forget(id) }

// fill is one flight: steps 1 to 3 above.
func (p *protocol[L]) fill(ctx context.Context, id, key string, load apiperf.LoadFunc, useStore bool) ([]byte, error) {
	for loads := 1; ; loads++ {
		var lease L
		var release func()
		if useStore {
			l, held, found, bypass := p.store.acquire(ctx, id)
			switch {
			case found:
				// Stored by a flight of another replica, or by one of this
				// process that an Invalidate detached from the group.
				return held.result()
			case bypass != "":
				p.m.fallback(bypass)
				useStore = false
			default:
				lease, release = l, func() { p.store.release(ctx, id, l) }
			}
		}
		val, lerr := p.load(ctx, key, load, release)
		if !useStore || !p.keep(ctx, id, lease, val, lerr) || loads >= maxAttempts {
			p.m.load(lerr)
			return val, lerr
		}
		// Invalidated while loading: what the loader read may be older
		// than the write, so read again.
		if lerr == nil {
			p.m.loadDiscarded.Inc()
		} else {
			p.m.load(lerr)
		}
	}
}

// keep settles a leased load's result and reports whether the lease was
// lost. An error other than an absence worth remembering is not cached:
// the lease is released.
func (p *protocol[L]) keep(ctx context.Context, id string, lease L, val []byte, lerr error) (lost bool) {
	switch {
	case lerr == nil:
		return p.store.settle(ctx, id, lease, outcome{val: val})
	case isNotFound(lerr) && p.negative:
		return p.store.settle(ctx, id, lease, outcome{absent: true, msg: message(lerr)})
	}
	p.store.release(ctx, id, lease)
	return false
}

// load is the one place either cache calls a loader. The loader gets the
// first caller's values without its cancellation, bounded by LeaseTTL from
// now. Should it panic, release (when set) runs on the way out, so that
// other replicas do not wait LeaseTTL for a load that will never store.
func (p *protocol[L]) load(ctx context.Context, key string, load apiperf.LoadFunc, release func()) (val []byte, err error) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.leaseTTL)
	defer cancel()
	returned := false
	defer func() {
		if !returned && release != nil {
			release()
		}
	}()
	val, err = load(lctx, key)
	returned = true
	return val, err
}

// notFound is the error a remembered absence returns. The message is the
// one the loader gave when the absence was cached, so a 404 reads the same
// whether it came from the database or from the cache.
func notFound(msg string) error {
	if msg == "" {
		msg = "not found"
	}
	return &apiperf.Error{Code: apiperf.ENOTFOUND, Message: msg}
}

// isNotFound reports whether a load error is an absence worth remembering.
func isNotFound(err error) bool { return apiperf.ErrorCode(err) == apiperf.ENOTFOUND }

// message is the client-safe message of a not-found error, kept with the
// absence.
func message(err error) string {
	var e *apiperf.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return ""
}
