package limiter

import (
	"context"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Batched decisions.
//
// A plain EVALSHA per request costs a network round trip per request. In
// batched mode (the default of NewRedis) a process reserves several tokens
// in one script call and spends them in memory, so a busy client costs a
// round trip per batch rather than per request.
//
// Why this stays exact. In GCRA every allowed unit of cost occupies a slot,
// a point v on Redis's time line spaced one emission interval T from its
// neighbours, and a unit is allowed at time s only if s < v <= s + Burst*T.
// Counting the distinct slots that fit in (a, b + Burst*T] shows that at
// most Burst + (b-a)/T units are allowed in any interval [a, b]. A reserved
// token is such a slot: the script hands out slots tat+T, tat+2T, ... and
// each was within s + Burst*T when reserved. Spending it later keeps the
// upper bound; the lower bound s < v holds only until the slot's time
// passes. So a reserved token is spent only before its slot time, measured
// conservatively: the slot deadline on the local monotonic clock is taken
// from the instant the call was sent, which is no later than the moment
// Redis read TIME. A token whose slot time has passed is dropped, never
// spent. With that rule every replica together never allows more than
// Burst + t/T units in any interval of length t, exactly like one Redis
// call per request; a replica that dies or is slow only wastes tokens.
//
// Refusals are cached the same way: when Redis refuses cost c until
// retry-after, the process refuses cost >= c until that instant (again
// anchored at the send time, so it never refuses longer than Redis would;
// the TAT only grows, so nothing can make Redis allow earlier).
//
// Batch size. The script grants up to want = BatchWindow/T tokens (capped by
// MaxBatch) but never more than half of what the bucket has available, and
// always at least the request's own cost. A client far from its limit gets
// full batches; as it nears the limit the batches halve down to one, and at
// the limit every decision is made by Redis itself, one call per emission
// interval at most thanks to the refusal cache.
//
// The trade-off. Tokens reserved by one replica are unavailable to the
// others until it spends them or their slot time passes. A client whose
// traffic is spread over replicas can therefore be refused by one replica
// while another still holds tokens for it, somewhat before it has used its
// whole burst; the halving rule bounds this (every grant leaves half of the
// available tokens in Redis). The global upper bound is never exceeded. A
// client slower than one request per T on a replica wastes most of that
// replica's batch, which only costs other replicas headroom, bounded by the
// batch window. Set RedisOptions.Plain for strict per-request sharing.
//
// Concurrency. All requests of one process for one bucket share a single
// in-flight script call: the first request that finds no usable token
// makes the call, the others wait for it and then decide from memory.

// bucketShard is one lock-protected part of the in-process bucket table.
type bucketShard struct {
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep int64
	_         [40]byte
}

// bucket is the process's view of one Redis bucket. Times are nanoseconds
// of the local monotonic clock (monoNanos).
type bucket struct {
	mu sync.Mutex

	// Reserved slots: count of them, the i-th (from 0) usable while
	// now < next + i*slotNs.
	next   int64
	count  int
	slotNs int64

	// tatNs is Redis's TAT after the last call, mapped onto the local clock;
	// it only feeds the Remaining and ResetAfter estimates.
	tatNs int64

	// A request of cost >= denyCost is refused until denyUntil.
	denyUntil int64
	denyCost  int

	// inflight is non-nil while a script call for this bucket runs; it is
	// closed when the call's outcome has been applied.
	inflight chan struct{}
}

// expire drops the reserved slots whose time has passed.
func (b *bucket) expire(now int64) {
	if b.count == 0 || now < b.next {
		return
	}
	k := (now-b.next)/b.slotNs + 1
	if k >= int64(b.count) {
		b.count = 0
		return
	}
	b.count -= int(k)
	b.next += k * b.slotNs
}

// decide tries to settle a request from memory. The caller holds b.mu.
func (b *bucket) decide(now int64, t int64, burst, cost int) (Result, bool) {
	b.expire(now)
	if b.count >= cost {
		b.count -= cost
		b.next += int64(cost) * b.slotNs
		return b.estimate(now, t, burst, Result{Allowed: true}), true
	}
	if now < b.denyUntil && cost >= b.denyCost {
		return b.estimate(now, t, burst, Result{RetryAfter: nanosDuration(b.denyUntil - now)}), true
	}
	return Result{}, false
}

// estimate fills Limit, Remaining and ResetAfter from the last known Redis
// TAT, refilled since, plus the tokens this process still holds. Other
// replicas may have spent some since, so these are advisory numbers for
// the RateLimit header; the decision itself is exact.
func (b *bucket) estimate(now int64, t int64, burst int, r Result) Result {
	r.Limit = burst
	tNs := t * 1000
	ahead := max(b.tatNs-now, 0)
	free := (int64(burst)*tNs - ahead) / tNs
	r.Remaining = int(min(max(free, 0)+int64(b.count), int64(burst)))
	r.ResetAfter = nanosDuration(ahead)
	return r
}

// bucket returns the process's bucket for (name, key), creating it if asked.
func (r *Redis) bucket(name, key string, create bool) *bucket {
	var buf [128]byte
	id := appendBucketID(buf[:0], name, key)
	sh := &r.shards[xxhash.Sum64(id)%localShards]
	sh.mu.Lock()
	b := sh.buckets[string(id)]
	if b == nil && create {
		sh.sweep(monoNanos())
		b = &bucket{}
		sh.buckets[string(id)] = b
	}
	sh.mu.Unlock()
	return b
}

// sweep forgets buckets that hold nothing worth keeping, at most once per
// sweepEvery. A request still using a forgotten bucket finishes on it
// safely: its tokens are real reservations, merely no longer shared.
func (sh *bucketShard) sweep(now int64) {
	if now-sh.lastSweep < int64(sweepEvery) {
		return
	}
	sh.lastSweep = now
	for k, b := range sh.buckets {
		if !b.mu.TryLock() {
			continue
		}
		b.expire(now)
		if b.inflight == nil && b.count == 0 && now >= b.denyUntil {
			delete(sh.buckets, k)
		}
		b.mu.Unlock()
	}
}

// tryAllow implements fastDecider: it decides from reserved tokens or a
// cached refusal and reports ok=false when a script call is needed.
func (r *Redis) tryAllow(key string, p Policy, cost int) (Result, bool, error) {
	t, err := p.interval(cost)
	if err != nil {
		return Result{}, true, err
	}
	if cost > p.Burst {
		return never(p.Burst, 0, 0), true, nil
	}
	if r.plain {
		return Result{}, false, nil
	}
	b := r.bucket(p.Name, key, false)
	if b == nil {
		return Result{}, false, nil
	}
	b.mu.Lock()
	res, ok := b.decide(monoNanos(), t, p.Burst, cost)
	b.mu.Unlock()
	return res, ok, nil
}

// allowBatched decides one request in batched mode.
func (r *Redis) allowBatched(ctx context.Context, key string, p *Policy, t int64, cost int) (Result, error) {
	if cost > p.Burst {
		// Never allowed whatever the bucket holds; Redis is not asked.
		return never(p.Burst, 0, 0), nil
	}
	want := int((r.batchWindow + t - 1) / t)
	if r.maxBatch > 0 && want > r.maxBatch {
		want = r.maxBatch
	}
	b := r.bucket(p.Name, key, true)
	b.mu.Lock()
	for {
		if res, ok := b.decide(monoNanos(), t, p.Burst, cost); ok {
			b.mu.Unlock()
			return res, nil
		}
		if ch := b.inflight; ch != nil {
			b.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return Result{}, unavailable(ctx.Err())
			}
			b.mu.Lock()
			continue
		}
		return r.refill(ctx, b, key, p, t, cost, max(want, cost))
	}
}

// refill makes the one script call for b, applies its outcome and decides
// the calling request. It is entered with b.mu held and returns with it
// released.
func (r *Redis) refill(ctx context.Context, b *bucket, key string, p *Policy, t int64, cost, want int) (Result, error) {
	// The slots still held (fewer than cost) are set aside for this request:
	// if Redis grants the rest, the request spends both; if not, they go
	// back. No other call can run meanwhile, so they stay the lowest slots.
	took, tookNext := b.count, b.next
	b.count = 0
	ch := make(chan struct{})
	b.inflight = ch
	b.mu.Unlock()

	sent := monoNanos()
	rep, err := r.eval(ctx, p.Name, key, t, p.Burst, cost-took, want)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight = nil
	close(ch)
	if err != nil {
		b.count, b.next = took, tookNext
		return Result{}, err
	}
	tNs := t * 1000
	b.tatNs = sent + rep.resetAfter*1000
	if rep.granted == 0 {
		b.count, b.next = took, tookNext
		b.denyUntil = sent + rep.retryAfter*1000
		b.denyCost = cost
		res := b.estimate(sent, t, p.Burst, Result{RetryAfter: micros(rep.retryAfter)})
		res.Remaining = int(rep.remaining)
		return res, nil
	}
	// The first cost-took granted slots are this request's, decided by
	// Redis at its own clock; the rest are reserved here. Slot k (from 1)
	// sits at rep.tat + k*t on Redis's clock.
	need := int64(cost - took)
	b.count = int(rep.granted - need)
	b.next = sent + (rep.tat+(need+1)*t-rep.now)*1000
	b.slotNs = tNs
	b.denyUntil = 0
	return Result{
		Allowed:    true,
		Limit:      p.Burst,
		Remaining:  int(min(rep.remaining+int64(b.count), int64(p.Burst))),
		ResetAfter: micros(rep.resetAfter),
	}, nil
}
