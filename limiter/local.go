package limiter

import (
	"cmp"
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// Local is an exact in-process GCRA limiter. It serves the embedded mode
// (no Redis) and is the fallback of Fallback. Its state lives in this
// process only, so several replicas using Local each allow the full policy.
type Local struct {
	// Now, when set before the first Allow, replaces the clock; tests use
	// it to replay a sequence of decisions at chosen instants. Nil means
	// the monotonic clock.
	Now func() time.Time
	// MaxClients, when set before the first Allow, caps the buckets kept:
	// 0 means DefaultMaxClients, a negative number no cap. A new client
	// that finds no room (every bucket of its shard still in use) is
	// decided on a shared bucket: one of overflowBuckets per policy,
	// chosen by a hash of the client key with a seed of this process's
	// own, so that the clients a flood crowds out share their allowance
	// with a small, unpredictable part of it rather than all of it. The
	// limit then errs toward refusing, and memory stays bounded however
	// many addresses a flood comes from.
	MaxClients int

	tats      table[*localTAT]
	capOnce   sync.Once
	shardCap  int
	seed      maphash.Seed
	ovMu      sync.Mutex
	overflow  map[overflowKey]*localTAT
	untracked atomic.Int64 // decisions made on a shared bucket
	// overflowN is the number of shared buckets per policy:
	// overflowBuckets, or what a test sets before the first Allow.
	overflowN int
}

// overflowBuckets is how many shared buckets each policy has for the
// clients over MaxClients: enough that a flood spread over them leaves
// most of the shared allowance to the rest, few enough to cost nothing
// (about 100 bytes each).
const overflowBuckets = 1024

// overflowKey names a shared bucket: the policy and the slot.
type overflowKey struct {
	name string
	slot int
}

// localTAT is one bucket's theoretical arrival time, in microseconds.
type localTAT struct{ us int64 }

// idle reports that the bucket is full again at now: forgetting it changes
// no decision.
func (e *localTAT) idle(now int64) bool { return e.us <= now }

var _ Limiter = (*Local)(nil)

// NewLocal returns an empty in-process limiter.
func NewLocal() *Local {
	l := &Local{}
	l.tats.init()
	return l
}

// Allow implements Limiter. It never blocks on I/O and never fails except
// for an invalid policy or cost.
func (l *Local) Allow(_ context.Context, key string, p apiperf.RatePolicy, cost int) (apiperf.RateDecision, error) {
	r, _, err := l.tryAllow(key, p, cost)
	return r, err
}

// tryAllow implements fastDecider: Local always decides.
func (l *Local) tryAllow(key string, p apiperf.RatePolicy, cost int) (apiperf.RateDecision, bool, error) {
	return l.allowAfter(key, p, cost, 0)
}

// allowAfter is tryAllow for a bucket known to be at least ahead
// microseconds from full elsewhere: its TAT is taken as no earlier than
// now + ahead. Fallback passes what the primary last learned of the
// bucket, so that a client that spent its burst there does not find a
// fresh one here.
func (l *Local) allowAfter(key string, p apiperf.RatePolicy, cost int, ahead int64) (apiperf.RateDecision, bool, error) {
	t, err := interval(&p, cost)
	if err != nil {
		return apiperf.RateDecision{}, true, err
	}
	var buf [128]byte
	k := appendBucketID(buf[:0], p.Name, key)
	now := l.nowMicros()
	sh := l.tats.shard(k)

	l.capOnce.Do(func() {
		if n := cmp.Or(l.MaxClients, DefaultMaxClients); n > 0 {
			l.shardCap = (n + tableShards - 1) / tableShards
		}
		l.seed = maphash.MakeSeed()
		l.overflowN = cmp.Or(l.overflowN, overflowBuckets)
	})

	sh.mu.Lock()
	e := sh.m[string(k)]
	if e == nil {
		sh.sweep(now, sweepEvery.Microseconds())
		if !sh.room(l.shardCap, now, time.Second.Microseconds()) {
			sh.mu.Unlock()
			l.untracked.Add(1)
			return l.allowShared(p.Name, key, now, t, p.Burst, cost, ahead), true, nil
		}
	}
	tat := now + max(ahead, 0)
	if e != nil && e.us > tat {
		tat = e.us
	}
	r, newTAT := gcra(now, tat, t, p.Burst, cost)
	if r.Allowed {
		if e == nil {
			e = &localTAT{}
			sh.m[string(k)] = e
		}
		e.us = newTAT
	}
	sh.mu.Unlock()
	return r, true, nil
}

// allowShared decides a client over MaxClients on the shared bucket its
// key falls in. What is known of the client's own bucket (ahead) can
// refuse it, but only the cost is charged to the shared bucket: one
// client's debt is not every other client's.
func (l *Local) allowShared(name, key string, now, t int64, burst, cost int, ahead int64) apiperf.RateDecision {
	k := overflowKey{name: name, slot: int(maphash.String(l.seed, key) % uint64(l.overflowN))}
	l.ovMu.Lock()
	defer l.ovMu.Unlock()
	if l.overflow == nil {
		l.overflow = make(map[overflowKey]*localTAT)
	}
	e := l.overflow[k]
	if e == nil {
		e = &localTAT{}
		l.overflow[k] = e
	}
	shared := max(now, e.us)
	r, _ := gcra(now, max(now+max(ahead, 0), shared), t, burst, cost)
	if r.Allowed {
		e.us = shared + int64(cost)*t
	}
	return r
}

// gcra is the decision shared by Local and, line for line, the Lua script:
// tat is max(stored TAT, now), and cost is at most burst (interval checked
// it). It returns the decision and the new TAT.
func gcra(now, tat, t int64, burst, cost int) (apiperf.RateDecision, int64) {
	window := int64(burst) * t
	avail := floorDiv(window-(tat-now), t)
	remaining := int(max(avail, 0))
	if avail < int64(cost) {
		return apiperf.RateDecision{
			Limit:      burst,
			Remaining:  remaining,
			RetryAfter: micros(tat + int64(cost)*t - window - now),
			ResetAfter: micros(tat - now),
		}, tat
	}
	newTAT := tat + int64(cost)*t
	return apiperf.RateDecision{
		Allowed:    true,
		Limit:      burst,
		Remaining:  int(avail) - cost,
		ResetAfter: micros(newTAT - now),
	}, newTAT
}

// floorDiv divides rounding toward negative infinity, as Lua's math.floor
// does, so that Local and the script agree when a bucket is over-full.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Close implements Limiter. Local owns no goroutine or connection, so Close
// only drops the state.
func (l *Local) Close() {
	l.tats.clear()
	l.ovMu.Lock()
	clear(l.overflow)
	l.ovMu.Unlock()
}

// len counts the keys held, for tests of the idle expiry.
func (l *Local) len() int { return l.tats.len() }

func (l *Local) nowMicros() int64 {
	if l.Now != nil {
		return l.Now().UnixMicro()
	}
	return monoMicros()
}

// epoch anchors the monotonic clock used when no Now is set, so that wall
// clock steps never move a bucket.
var epoch = time.Now()

func monoMicros() int64 { return int64(time.Since(epoch) / time.Microsecond) }

func monoNanos() int64 { return int64(time.Since(epoch)) }

// appendBucketID appends the in-process identity of a bucket: the policy
// name and the client key, separated by a byte neither contains in practice.
func appendBucketID(dst []byte, name, key string) []byte {
	dst = append(dst, name...)
	dst = append(dst, 0)
	return append(dst, key...)
}
