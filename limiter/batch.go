package limiter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apiperf "github.com/api-perf/api-perf"
)

// Batched decisions.
//
// A plain EVALSHA per request costs a network round trip per request. In
// batched mode (the default of NewRedis) a process reserves several tokens
// in one script call and spends them in memory, so a busy client costs a
// round trip per batch rather than per request.
//
// Why this stays exact. In GCRA every allowed unit of cost occupies a slot,
// a point v on Redis's time line, the slots of one bucket at least one
// emission interval T apart, and a unit is allowed at time s only if
// s + T <= v <= s + Burst*T. Counting the slots that fit in
// [a + T, b + Burst*T] shows that at most Burst + (b-a)/T units are
// allowed in any interval [a, b]. A reserved token is such a slot: the
// script hands out slots tat+T, tat+2T, ... and each was within
// s + Burst*T when reserved. Spending it later keeps the upper bound; the
// lower bound s + T <= v holds only until one interval before the slot's
// time. So a reserved token is spent only before v - T, measured
// conservatively: the deadline on the local monotonic clock is taken from
// the instant the call was sent, which is no later than the moment Redis
// read TIME. A token past its deadline is dropped, never spent. With that
// rule every replica together never allows more than Burst + t/T units in
// any interval of length t, exactly like one Redis call per request; a
// replica that dies or is slow only wastes tokens.
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
// others until it spends them or their deadline passes. A client whose
// traffic is spread over replicas can therefore be refused by one replica
// while another still holds tokens for it, somewhat before it has used its
// whole burst; the halving rule bounds this (every grant leaves half of the
// available tokens in Redis). The global upper bound is never exceeded. A
// client slower than one request per T on a replica wastes most of that
// replica's batch, which only costs other replicas headroom, bounded by the
// batch window. Set RedisOptions.Plain for strict per-request sharing.
//
// Prefetch. A request that spends from a large batch (at least
// minPrefetchGrant tokens) and finds it three-quarters used, or within a
// quarter of the batch window of expiring, starts the next call in the
// background; the new batch is kept as a spare range behind the current
// one. A busy client far from its limit therefore never waits for Redis
// once its first batch is in. This at most doubles what one replica holds.
//
// Debt (RedisOptions.Debt, off by default). A client too slow to spend a
// batch before its slots pass (a crowd of clients at a few requests a
// second each) would still need a call per request. With debt, a process
// that has seen a reply for the bucket showing it at least half free
// (counting the debt not yet charged) allows the request at once and
// charges it later; the script adds the owed units to the TAT whatever the
// bucket holds. A charged unit takes a slot no earlier than one interval
// after it was allowed, so the only way it can break the slot argument
// above is by landing beyond the window, and what lies beyond the window
// is at most the debt not yet charged: at most debtCap per process,
// because a process counts the units in a call still in flight as
// uncharged, never holds more than debtCap of them, and takes none while
// its last reply showed the bucket less than half free. Hence across N
// processes at most Burst + t/T + N*debtCap units in any interval of
// length t, and a client's long-run rate is still the policy's: it pays
// for what it was allowed with later refusals. Debt is never taken for a
// bucket the process has no reply for (a new client's first request is
// Redis's). It is taken while a call for the bucket is in flight (the
// flush puts one in flight for every client at once), and what was taken
// meanwhile is charged or queued when that call returns.
//
// When the debt is charged does not enter that argument, only how much of
// it there is, so the charge waits (see debt.go): debt below the cap goes
// out with the next flush, every DebtDelay, in one coalesced round trip
// with every other client's, and a client making a few requests a second
// costs Redis one bucket update per flush instead of one per request. Debt
// that reaches the cap goes out at once, with a request for a batch: the
// client is busy enough to spend one.
//
// Concurrency. All requests of one process for one bucket share a single
// in-flight script call: the first request that finds no usable token (or
// the prefetch) makes the call, the others wait for it and then decide
// from memory. A request whose deadline passes while it waits for another
// request's call reports errWaited, which Fallback answers in process
// without counting it as one more failure of Redis.

// minPrefetchGrant is the smallest batch worth refilling ahead of time;
// smaller grants mean the client is near its limit, where every token
// should be decided by Redis as late as possible.
const minPrefetchGrant = 8

// prefetchTimeout bounds a background call; it holds no request up.
const prefetchTimeout = time.Second

// errWaited marks a request that gave up waiting for another request's
// call to Redis: the same slowness as that call, not a new failure.
var errWaited = errors.New("gave up waiting for a shared call to Redis")

// slotRange is a run of reserved slots: count of them, the i-th (from 0)
// usable while now < next + i*step, on the local monotonic clock (ns);
// next is the lowest slot's time minus one interval.
type slotRange struct {
	next  int64
	count int
	step  int64
}

// expire drops the slots whose time has passed.
func (s *slotRange) expire(now int64) {
	if s.count == 0 || now < s.next {
		return
	}
	k := (now-s.next)/s.step + 1
	if k >= int64(s.count) {
		*s = slotRange{}
		return
	}
	s.count -= int(k)
	s.next += k * s.step
}

// take spends the n lowest slots; the caller checked that there are n.
func (s *slotRange) take(n int) {
	s.count -= n
	s.next += int64(n) * s.step
}

// bucket is the process's view of one Redis bucket.
type bucket struct {
	mu sync.Mutex

	// Reserved slots: cur is spent first; spare, when set, came from a
	// later call, so all its slots lie after cur's.
	cur, spare slotRange
	// lastGrant is the size of the last batch, which says how far the
	// client is from its limit.
	lastGrant int

	// tatNs is Redis's TAT after the last call, mapped onto the local clock
	// at the reply's arrival, which is no earlier than the moment Redis
	// read TIME: the view is never fuller of free tokens than Redis was. It
	// decides whether a request may go on debt, seeds the fallback, and
	// feeds the Remaining and ResetAfter estimates.
	tatNs int64

	// A request of cost >= denyCost is refused until denyUntil.
	denyUntil int64
	denyCost  int

	// inflight is non-nil while a script call for this bucket runs; it is
	// closed when the call's outcome has been applied.
	inflight chan struct{}

	// known says that a reply has been seen, so tatNs means something.
	known bool
	// seen is when a request last looked the bucket up; set under the
	// table shard's lock, read by the sweep.
	seen atomic.Int64
	// Debt: units allowed before Redis charged them; owed are not yet
	// sent, owing are in the call now in flight.
	owed, owing int
	// queued says that the bucket waits in the debt queue for a flush.
	queued bool
}

func (b *bucket) held() int { return b.cur.count + b.spare.count }

// expire drops passed slots and moves the spare range up when the current
// one is used up.
func (b *bucket) expire(now int64) {
	b.cur.expire(now)
	if b.cur.count == 0 {
		b.cur, b.spare = b.spare, slotRange{}
		b.cur.expire(now)
	}
}

// spend takes n held slots, lowest first; the caller checked held() >= n.
func (b *bucket) spend(n int) {
	k := min(n, b.cur.count)
	b.cur.take(k)
	if n > k {
		b.spare.take(n - k)
	}
	if b.cur.count == 0 {
		b.cur, b.spare = b.spare, slotRange{}
	}
}

// decide tries to settle a request from memory. The caller holds b.mu.
func (b *bucket) decide(now int64, t int64, burst, cost int) (apiperf.RateDecision, bool) {
	b.expire(now)
	if b.held() >= cost {
		b.spend(cost)
		return b.estimate(now, t, burst, apiperf.RateDecision{Allowed: true}), true
	}
	if now < b.denyUntil && cost >= b.denyCost {
		return b.estimate(now, t, burst, apiperf.RateDecision{RetryAfter: nanosDuration(b.denyUntil - now)}), true
	}
	return apiperf.RateDecision{}, false
}

// wantsPrefetch says whether the next batch should be fetched now, before
// this one runs out. The caller holds b.mu.
func (b *bucket) wantsPrefetch(now, leadNs int64) bool {
	if b.inflight != nil || b.spare.count > 0 || b.cur.count == 0 || b.lastGrant < minPrefetchGrant {
		return false
	}
	last := b.cur.next + int64(b.cur.count-1)*b.cur.step
	return b.cur.count <= b.lastGrant/4 || last-now < leadNs
}

// estimate fills Limit, Remaining and ResetAfter from the last known Redis
// TAT, refilled since, plus the tokens this process still holds. Other
// replicas may have spent some since, so these are advisory numbers for
// the client to read; the decision itself is exact.
func (b *bucket) estimate(now int64, t int64, burst int, r apiperf.RateDecision) apiperf.RateDecision {
	r.Limit = burst
	tNs := t * 1000
	ahead := max(b.tatNs-now, 0)
	free := (int64(burst)*tNs - ahead) / tNs
	r.Remaining = int(min(max(free, 0)+int64(b.held()), int64(burst)))
	r.ResetAfter = nanosDuration(ahead)
	return r
}

// bucket returns the process's bucket for (name, key), creating it if
// asked and there is room under MaxClients; nil when there is none.
func (r *Redis) bucket(name, key string, create bool) *bucket {
	var buf [128]byte
	id := appendBucketID(buf[:0], name, key)
	sh := r.buckets.shard(id)
	sh.mu.Lock()
	b := sh.m[string(id)]
	now := monoNanos()
	if b == nil && create {
		sh.sweep(now, int64(sweepEvery))
		if sh.room(r.shardCap, now, int64(time.Second)) {
			b = &bucket{}
			sh.m[string(id)] = b
		}
	}
	// Marked as used under the shard's lock, so that no sweep forgets it
	// between this lookup and the caller's use of it: a request deciding on
	// a forgotten bucket while the next one makes a new one would let the
	// process owe the client twice its debt cap.
	if b != nil {
		b.seen.Store(now)
	}
	sh.mu.Unlock()
	return b
}

// idle reports that the bucket holds nothing worth keeping: no call in
// flight, no reserved slot, no cached refusal, no uncharged debt, and no
// request for a whole sweep interval. The last condition keeps what the
// process knows of a slow client that is still active (its last reply),
// so that its next request can go on debt instead of waiting for a new
// first call; memory follows the clients active in the last interval. A
// request still using a forgotten bucket finishes on it safely: its tokens
// are real reservations, merely no longer shared. A bucket in use right
// now is kept.
func (b *bucket) idle(now int64) bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	b.expire(now)
	return b.inflight == nil && b.held() == 0 && now >= b.denyUntil && b.owed == 0 && !b.queued &&
		now-b.seen.Load() >= int64(sweepEvery)
}

// canOwe says whether a request of cost may be allowed on debt at now:
// debt is on, the last reply showed the bucket at least half free even
// counting the debt not yet charged, and that debt, the part in a call
// now in flight included, stays within max. A call in flight does not
// stop it: the debt flush puts a call in flight for every client at once,
// and a crowd that waited for those would stall the whole server once per
// flush. The caller holds b.mu and found no reserved slot and no cached
// refusal.
func (b *bucket) canOwe(now, t int64, burst, cost, max int) bool {
	debt := b.owed + b.owing + cost
	if max == 0 || !b.known || debt > max {
		return false
	}
	tNs := t * 1000
	free := (int64(burst)*tNs - max64(b.tatNs-now, 0)) / tNs
	return 2*(free-int64(debt)) >= int64(burst)
}

func max64(a, b int64) int64 { return max(a, b) }

// debtCap is the most debt a process takes for one bucket of a policy
// with burst: Debt, and never more than an eighth of the burst, so that a
// small burst (failed authentications, say) is decided exactly. Once
// Close has begun it is 0: debt taken then might find neither a flush nor
// a call left to charge it, so those requests are Redis's.
func (r *Redis) debtCap(burst int) int {
	if r.closing.Load() {
		return 0
	}
	return min(r.debt, burst/8)
}

// charge sends the debt owed for b at once when it has reached the cap,
// or when debt is never delayed, or when Close has run the last flush,
// with a request for a batch: the client is busy. Otherwise the bucket
// waits for the next flush. While a call for b is in flight nothing is
// sent: chargeLeft sends it when that call returns. A caller running in a
// call that Close waits for (waited) starts the next call even once Close
// has begun, so that no debt is left behind; any other caller starts it
// only before. The caller holds b.mu and has just allowed a request on
// debt, or is chargeLeft.
func (r *Redis) charge(b *bucket, name, key string, t int64, burst int, waited bool) {
	if b.inflight != nil {
		return
	}
	if r.debtDelay != 0 && b.owed+b.owing < r.debtCap(burst) && (b.queued || r.debts.add(b, name, key, t, burst)) {
		return
	}
	if waited {
		r.send(b, name, key, t, burst, r.want(t, 1))
	} else {
		r.prefetch(b, name, key, t, burst, r.want(t, 1))
	}
}

// chargeLeft deals with the debt taken while a call for b was in flight,
// once that call has succeeded: as charge would have when it was taken.
// waited is as for charge: a background call, or a request's call that
// began before Close. The caller holds b.mu and has applied the call's
// outcome.
func (r *Redis) chargeLeft(b *bucket, name, key string, t int64, burst int, waited bool) {
	if b.owed > 0 {
		r.charge(b, name, key, t, burst, waited)
	}
}

// owe allows a request of cost on debt. The caller holds b.mu and checked
// canOwe.
func (b *bucket) owe(now, t int64, burst, cost int) apiperf.RateDecision {
	b.owed += cost
	res := b.estimate(now, t, burst, apiperf.RateDecision{Allowed: true})
	res.Remaining = max(res.Remaining-b.owed-b.owing, 0)
	return res
}

// takeOwed moves the owed units into the call about to be made and
// returns how many it must charge. The caller holds b.mu.
func (b *bucket) takeOwed() int {
	n := b.owed
	b.owing, b.owed = b.owing+n, 0
	return n
}

// settle applies the outcome of a call that carried owed units: charged,
// or, after an error, owed again by the next call. The caller holds b.mu.
func (b *bucket) settle(owed int, err error) {
	b.owing -= owed
	if err != nil {
		b.owed += owed
	}
}

// knownAhead implements aheadKnower: how far, in microseconds, the
// bucket's TAT was ahead of now on this process's last reply for it,
// counting the debt not yet charged. ok is false when the process has
// no reply for the bucket.
func (r *Redis) knownAhead(key string, p apiperf.RatePolicy) (int64, bool) {
	t, err := interval(&p, 1)
	if err != nil || r.plain {
		return 0, false
	}
	b := r.bucket(p.Name, key, false)
	if b == nil {
		return 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.known {
		return 0, false
	}
	return (b.tatNs-monoNanos())/1000 + int64(b.owed+b.owing)*t, true
}

// want is the batch size asked for under a policy of interval t.
func (r *Redis) want(t int64, cost int) int {
	w := int((r.batchWindow + t - 1) / t)
	if r.maxBatch > 0 && w > r.maxBatch {
		w = r.maxBatch
	}
	return max(w, cost)
}

// tryAllow implements fastDecider: it decides from reserved tokens or a
// cached refusal and reports ok=false when a script call is needed.
func (r *Redis) tryAllow(key string, p apiperf.RatePolicy, cost int) (apiperf.RateDecision, bool, error) {
	t, err := interval(&p, cost)
	if err != nil {
		return apiperf.RateDecision{}, true, err
	}
	if r.plain {
		return apiperf.RateDecision{}, false, nil
	}
	b := r.bucket(p.Name, key, false)
	if b == nil {
		return apiperf.RateDecision{}, false, nil
	}
	b.mu.Lock()
	now := monoNanos()
	res, ok := b.decide(now, t, p.Burst, cost)
	switch {
	case ok && res.Allowed && b.wantsPrefetch(now, r.batchWindow*250):
		r.prefetch(b, p.Name, key, t, p.Burst, r.want(t, 1))
	case !ok && b.canOwe(now, t, p.Burst, cost, r.debtCap(p.Burst)):
		res, ok = b.owe(now, t, p.Burst, cost), true
		r.charge(b, p.Name, key, t, p.Burst, false)
	}
	b.mu.Unlock()
	return res, ok, nil
}

// allowBatched decides one request in batched mode; interval has checked
// the policy and the cost.
func (r *Redis) allowBatched(ctx context.Context, key string, p *apiperf.RatePolicy, t int64, cost int) (apiperf.RateDecision, error) {
	b := r.bucket(p.Name, key, true)
	if b == nil {
		// The process keeps MaxClients buckets already: this client is
		// decided by Redis alone, exactly, and costs a call per request.
		r.untracked.Add(1)
		return r.plainAllow(ctx, key, p, t, cost)
	}
	b.mu.Lock()
	for {
		now := monoNanos()
		if res, ok := b.decide(now, t, p.Burst, cost); ok {
			if res.Allowed && b.wantsPrefetch(now, r.batchWindow*250) {
				r.prefetch(b, p.Name, key, t, p.Burst, r.want(t, 1))
			}
			b.mu.Unlock()
			return res, nil
		}
		if b.canOwe(now, t, p.Burst, cost, r.debtCap(p.Burst)) {
			res := b.owe(now, t, p.Burst, cost)
			r.charge(b, p.Name, key, t, p.Burst, false)
			b.mu.Unlock()
			return res, nil
		}
		if ch := b.inflight; ch != nil {
			b.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return apiperf.RateDecision{}, unavailable(fmt.Errorf("%w: %w", errWaited, ctx.Err()))
			}
			b.mu.Lock()
			continue
		}
		return r.refill(ctx, b, key, p, t, cost, r.want(t, cost))
	}
}

// refill makes the one script call for b, applies its outcome and decides
// the calling request. It is entered with b.mu held and returns with it
// released.
func (r *Redis) refill(ctx context.Context, b *bucket, key string, p *apiperf.RatePolicy, t int64, cost, want int) (apiperf.RateDecision, error) {
	// With debt on, Close waits for this call as for a background one:
	// requests may take debt while it is out, and its return must be able
	// to send that debt even once Close has stopped starting calls.
	held := r.debt > 0 && r.hold()
	if held {
		defer r.wg.Done()
	}
	// The slots still held (fewer than cost) are set aside for this request:
	// if Redis grants the rest, the request spends both; if not, they go
	// back. No other call can run meanwhile, so nothing else changes them.
	took := b.held()
	cur, spare := b.cur, b.spare
	b.cur, b.spare = slotRange{}, slotRange{}
	ch := make(chan struct{})
	b.inflight = ch
	owed := b.takeOwed()
	b.mu.Unlock()

	r.refills.Add(1)
	sent := monoNanos()
	rep, err := r.eval(ctx, p.Name, key, t, p.Burst, cost-took, want, owed)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight = nil
	close(ch)
	b.settle(owed, err)
	if err != nil {
		b.cur, b.spare = cur, spare
		r.requeue(b, p.Name, key, t, p.Burst)
		return apiperf.RateDecision{}, err
	}
	b.known = true
	b.tatNs = monoNanos() + rep.resetAfter*1000
	if rep.granted == 0 {
		b.cur, b.spare = cur, spare
		b.denyUntil = sent + rep.retryAfter*1000
		b.denyCost = cost
		r.chargeLeft(b, p.Name, key, t, p.Burst, held)
		res := b.estimate(sent, t, p.Burst, apiperf.RateDecision{RetryAfter: micros(rep.retryAfter)})
		res.Remaining = int(rep.remaining)
		return res, nil
	}
	// The first cost-took granted slots are this request's, decided by
	// Redis at its own clock; the rest are reserved here. Slot k (from 1)
	// sits at rep.tat + k*t on Redis's clock and may be spent until one
	// interval before that.
	need := int64(cost - took)
	b.cur = slotRange{next: sent + (rep.tat+need*t-rep.now)*1000, count: int(rep.granted - need), step: t * 1000}
	b.lastGrant = int(rep.granted)
	b.denyUntil = 0
	r.chargeLeft(b, p.Name, key, t, p.Burst, held)
	return apiperf.RateDecision{
		Allowed:    true,
		Limit:      p.Burst,
		Remaining:  int(min(rep.remaining+int64(b.held()), int64(p.Burst))),
		ResetAfter: micros(rep.resetAfter),
	}, nil
}

// requeue puts b back in the debt queue after a call that carried its
// debt failed, whichever call it was (the flush's, the one sent at the
// cap, a request's own), so that the debt goes out with the next flush
// instead of waiting for the client's next request, which may never come.
// The caller holds b.mu and has settled the call.
func (r *Redis) requeue(b *bucket, name, key string, t int64, burst int) {
	if b.owed > 0 && !b.queued {
		r.debts.add(b, name, key, t, burst)
	}
}

// splitKey returns the policy name and the client key of a bucket's
// Redis key, prefix + "{" + name + ":" + client + "}", given the lengths
// of the prefix and the name.
func splitKey(full string, prefixLen, nameLen int) (name, key string) {
	at := prefixLen + 1
	return full[at : at+nameLen], full[at+nameLen+1 : len(full)-1]
}

// prefetch starts a background call that charges the bucket's debt and
// stores its batch of slots behind those held: as the spare range, or as
// the current one when none is held. The caller holds b.mu and has
// checked wantsPrefetch, or has just allowed a request on debt with no
// call in flight, or is the debt flush (want is then 0: a charge only).
// A debt the call fails to charge waits for the next flush.
func (r *Redis) prefetch(b *bucket, name, key string, t int64, burst, want int) {
	r.closeMu.RLock()
	defer r.closeMu.RUnlock()
	if r.closed {
		return
	}
	r.send(b, name, key, t, burst, want)
}

// send starts the call prefetch describes. The caller holds b.mu, and
// either holds r.closeMu for reading and has seen r.closed false, or runs
// in a call that Close waits for.
func (r *Redis) send(b *bucket, name, key string, t int64, burst, want int) {
	ch := make(chan struct{})
	b.inflight = ch
	owed := b.takeOwed()
	// need is 1 for a prefetch (it asks for at least a token) and 0 for a
	// call made for debt alone, which must not be refused for lack of one.
	need := 1
	if owed > 0 {
		need = 0
	}
	sent := monoNanos()
	// A queued call keeps the bucket's key in its own buffer, while name
	// and key may point into a request's, reused by the time the call
	// fails: the names for the debt queue are read back from the call.
	var call *scriptCall
	nameLen := len(name)
	done := func(rep reply, err error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.inflight = nil
		close(ch)
		b.settle(owed, err)
		n, k := name, key
		if call != nil {
			n, k = splitKey(call.keys[0], len(r.prefix), nameLen)
		}
		if err != nil {
			// The next request that runs out calls Redis itself; a
			// debt that was not charged waits for the next flush.
			r.requeue(b, n, k, t, burst)
			return
		}
		b.known = true
		b.tatNs = monoNanos() + rep.resetAfter*1000
		defer r.chargeLeft(b, n, k, t, burst, true)
		if rep.granted == 0 {
			b.denyUntil = sent + rep.retryAfter*1000
			b.denyCost = 1
			return
		}
		slots := slotRange{next: sent + (rep.tat-rep.now)*1000, count: int(rep.granted), step: t * 1000}
		if b.held() == 0 {
			b.cur = slots
		} else {
			b.spare = slots
		}
		b.lastGrant = int(rep.granted)
		b.expire(monoNanos())
	}
	if r.co != nil {
		// Queued with the other calls; the flusher applies the outcome,
		// and no goroutine or timer is spent on this call alone.
		c := callPool.Get().(*scriptCall)
		c.format(r.prefix, name, key, t, burst, need, want, owed)
		call = c
		c.deadline = time.Now().Add(prefetchTimeout)
		c.then = done
		r.co.enqueue(c)
		return
	}
	// The strings may point into a request's buffers, which the
	// background call outlives.
	name, key = strings.Clone(name), strings.Clone(key)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), prefetchTimeout)
		rep, err := r.eval(ctx, name, key, t, burst, need, want, owed)
		cancel()
		done(rep, err)
	}()
}
