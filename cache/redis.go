package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/redis/rueidis"
)

// A Redis key holds one of three things, told apart by its first byte:
//
//	'v' + value      a cached value
//	'n' + message    a remembered absence (the loader's ENOTFOUND message)
//	'l' + token      a lease: one replica is loading the key right now
//
// Keeping all three in the one key matters: Invalidate's DEL removes a lease
// as surely as a value, so a load that started before a write cannot store
// what it read once the write's Invalidate has run. These tags are the
// format of Redis values only; Local keeps outcomes as they are.
const (
	tagValue    = 'v'
	tagNegative = 'n'
	tagLease    = 'l'
)

// The scripts take the key in KEYS[1] only, so they run on Redis Cluster
// (the key carries its hash tag). Each is one round trip.
var (
	// acquireScript takes the lease when the key is empty and then returns
	// nil; otherwise it returns what the key holds (a value, an absence or
	// another replica's lease). It works on Redis versions that refuse
	// SET NX together with GET.
	acquireScript = rueidis.NewLuaScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)

	// storeScript replaces the lease ARGV[1] with ARGV[2] for ARGV[3]
	// milliseconds, and does nothing when the lease is gone (an Invalidate
	// deleted it, or it expired). It returns 1 when it stored.
	storeScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)

	// releaseScript deletes the lease ARGV[1] if it is still the one in
	// place, so that a failed load lets the next caller try at once.
	releaseScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// Redis is the Cache over Redis. Values are read with rueidis DoCache, so
// with a client that has client-side caching a hot key is served from
// process memory and Redis's invalidation push drops every replica's copy
// when the key changes; with a client without it every Get is one round trip
// and everything else works the same.
//
// Read-your-writes on the replica that calls Invalidate needs the client to
// use one connection per Redis node (NewClient builds it so): Invalidate then
// waits on that connection until Redis's invalidation push for the key has
// been applied, so a Get right after it cannot see the old client-side copy.
type Redis struct {
	client rueidis.Client
	opts   Options
	log    *slog.Logger
	m      *metrics
	proto  *protocol[string] // leases are tokens
	clock  coarseClock       // also renews dl every step
	dl     *deadlines
	// traced is set when the client makes spans (NewTracedClient): calls
	// then carry the caller's span (see callCtx).
	traced bool

	// near, when the client reports invalidation pushes (NewClient with
	// client-side caching), holds hot values in front of DoCache.
	near   *near
	pushes *invalidations

	// Script arguments formatted once.
	ttlMs, negativeTTLMs, leaseTTLMs string

	owner string        // random per instance; starts every lease token
	seq   atomic.Uint64 // makes lease tokens unique within the instance

	down    atomic.Bool  // Redis failed and has not answered since
	probeAt atomic.Int64 // while down: when (UnixNano) the next Get may ask Redis

	// pending holds the keys whose Invalidate failed, to be deleted as soon
	// as Redis answers again rather than left stale until their TTL.
	pendingMu sync.Mutex
	pending   map[string]struct{}
}

// maxPending bounds the failed invalidations kept for retry; past it the
// rest stay stale until their TTL, which the log says.
const maxPending = 10_000

var (
	_ Cache              = (*Redis)(nil)
	_ leaseStore[string] = (*Redis)(nil)
)

// NewRedis returns a Cache over c. It uses client-side caching when c has it
// (see NewClient). The client stays the caller's: Close does not close it.
func NewRedis(c rueidis.Client, opts Options) (*Redis, error) {
	if c == nil {
		return nil, errors.New("cache: NewRedis needs a rueidis client")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	for i := range id {
		id[i] = byte(rand.Uint32())
	}
	r := &Redis{
		client:        c,
		opts:          opts,
		log:           opts.Logger,
		m:             m,
		dl:            newDeadlines(opts.Timeout),
		ttlMs:         millis(opts.TTL),
		negativeTTLMs: millis(opts.NegativeTTL),
		leaseTTLMs:    millis(opts.LeaseTTL),
		owner:         string(tagLease) + hex.EncodeToString(id[:]) + ":",
		traced:        traced(c),
	}
	r.proto = newProtocol(r, m, &r.opts)
	r.clock.start(r.dl.step, func(int64) { r.dl.tick() })
	if tc, ok := c.(*trackedClient); ok {
		r.near, r.pushes = newNear(opts.Prefix, opts.MaxEntries), tc.pushes
		r.pushes.subscribe(r.near)
	}
	return r, nil
}

// millis formats d as whole milliseconds, at least 1, for PX arguments.
func millis(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// redisKey is the Redis key of a cache key: the prefix, then the key as a
// hash tag so that all of one key's commands go to one Cluster slot.
func (r *Redis) redisKey(key string) string {
	return r.opts.Prefix + "{" + key + "}"
}

// Get implements Cache. A hot key is one map read (near); otherwise the hit
// path is one DoCache call (no network hop on a client-side hit) and
// allocates only the Redis key. A miss runs the protocol (protocol.go);
// when Redis fails or is considered down, it loads without Redis.
func (r *Redis) Get(ctx context.Context, key string, load apiperf.LoadFunc) ([]byte, error) {
	// The near map is used only while Redis is up: its pushes are what
	// keep it fresh. epoch is read before DoCache (see near.put).
	var epoch uint64
	useNear := r.near != nil && !r.down.Load()
	if useNear {
		if v, ok := r.near.get(key, r.clock.coarse()); ok {
			r.m.clientHit.Inc()
			return v, nil
		}
		epoch = r.near.epoch.Load()
	}
	rkey := r.redisKey(key)
	if r.down.Load() && !r.probeDue() {
		return r.bypass(ctx, rkey, key, load, reasonCircuitOpen)
	}
	resp := r.client.DoCache(r.callCtx(ctx), r.client.B().Get().Key(rkey).Cache(), r.opts.TTL)
	b, err := resp.AsBytes()
	switch {
	case err == nil:
		if r.up() {
			// The probe read the key before the failed invalidations
			// were replayed; read it again now that they have been.
			return r.Get(ctx, key, load)
		}
		if o, ok := decode(b); ok {
			switch {
			case o.absent:
				r.m.negativeHit.Inc()
			case resp.IsCacheHit():
				r.m.clientHit.Inc()
			default:
				r.m.redisHit.Inc()
			}
			if useNear && !o.absent {
				r.near.put(key, epoch, o.val, r.nearExpiry(resp))
			}
			return o.result()
		}
		// A lease (or a value this package did not write): the flight
		// sorts it out.
	case rueidis.IsRedisNil(err):
		r.up()
	default:
		r.fail(err)
		return r.bypass(ctx, rkey, key, load, reasonOf(err))
	}
	r.m.miss.Inc()
	return r.proto.miss(ctx, rkey, key, load, true)
}

// bypass is a Get that loads without Redis, still once per process and key,
// counted as a miss and a fallback for reason.
func (r *Redis) bypass(ctx context.Context, rkey, key string, load apiperf.LoadFunc, reason string) ([]byte, error) {
	r.m.miss.Inc()
	r.m.fallback(reason)
	return r.proto.miss(ctx, rkey, key, load, false)
}

// acquire implements leaseStore: it takes the Redis lease, or waits for the
// replica that holds it and returns what that one stored. It bypasses
// Redis when Redis fails, when the wait is longer than LeaseTTL, or when
// the key holds a value this package did not write (which it leaves alone).
func (r *Redis) acquire(ctx context.Context, rkey string) (token string, held outcome, found bool, bypass string) {
	waitUntil := time.Now().Add(r.opts.LeaseTTL)
	for {
		token = r.owner + strconv.FormatUint(r.seq.Add(1), 10)
		cur, err := acquireScript.Exec(r.callCtx(ctx), r.client, []string{rkey}, []string{token, r.leaseTTLMs}).AsBytes()
		switch {
		case rueidis.IsRedisNil(err):
			return token, outcome{}, false, ""
		case err != nil:
			r.fail(err)
			return "", outcome{}, false, reasonOf(err)
		}
		// The key holds something: the lease is not ours.
		cur, gone, err := r.awaitLease(ctx, rkey, cur, waitUntil)
		switch {
		case errors.Is(err, errLeaseWait):
			return "", outcome{}, false, reasonLeaseWait
		case err != nil:
			r.fail(err)
			return "", outcome{}, false, reasonOf(err)
		case gone:
			continue // the lease went away without a value: try to take it
		}
		if o, ok := decode(cur); ok {
			return "", o, true, ""
		}
		return "", outcome{}, false, reasonRedisError
	}
}

// errLeaseWait ends a wait for another replica's lease that took longer
// than LeaseTTL.
var errLeaseWait = errors.New("cache: waited LeaseTTL for another load")

// awaitLease polls a key that holds another load's lease until it holds
// something else, and returns that (gone when the key is empty). Polling goes
// through DoCache, so with client-side caching it is a memory read until
// Redis pushes the key's invalidation, which the lease holder's store causes.
func (r *Redis) awaitLease(ctx context.Context, rkey string, cur []byte, until time.Time) (_ []byte, gone bool, err error) {
	for pause := time.Millisecond; tag(cur) == tagLease; pause = min(2*pause, maxPollPause) {
		if time.Now().After(until) {
			return nil, false, errLeaseWait
		}
		time.Sleep(pause)
		cur, err = r.client.DoCache(r.callCtx(ctx), r.client.B().Get().Key(rkey).Cache(), r.opts.TTL).AsBytes()
		if rueidis.IsRedisNil(err) {
			return nil, true, nil
		} else if err != nil {
			return nil, false, err
		}
	}
	return cur, false, nil
}

// maxPollPause caps the pause between two looks at another load's lease.
const maxPollPause = 16 * time.Millisecond

// settle implements leaseStore: the script replaces the lease token with
// the encoded outcome only while the token is still in place. A failed
// call is no lost lease: Redis is noted down and the result returned.
func (r *Redis) settle(ctx context.Context, rkey, token string, o outcome) (lost bool) {
	ttl := r.ttlMs
	if o.absent {
		ttl = r.negativeTTLMs
	}
	n, err := storeScript.Exec(r.callCtx(ctx), r.client, []string{rkey},
		[]string{token, rueidis.BinaryString(encode(o)), ttl}).AsInt64()
	if err != nil {
		r.fail(err)
		return false
	}
	return n == 0
}

// release implements leaseStore.
func (r *Redis) release(ctx context.Context, rkey, token string) {
	if err := releaseScript.Exec(r.callCtx(ctx), r.client, []string{rkey}, []string{token}).Error(); err != nil {
		r.fail(err)
	}
}

// encode is an outcome as a Redis value: its tag, then the value or the
// absence's message.
func encode(o outcome) []byte {
	if o.absent {
		return append([]byte{tagNegative}, o.msg...)
	}
	b := make([]byte, 1+len(o.val))
	b[0] = tagValue
	copy(b[1:], o.val)
	return b
}

// decode reads a Redis value this package wrote; ok is false for a lease
// or anything else. A value aliases b.
func decode(b []byte) (o outcome, ok bool) {
	switch tag(b) {
	case tagValue:
		return outcome{val: b[1:]}, true
	case tagNegative:
		return outcome{absent: true, msg: string(b[1:])}, true
	}
	return outcome{}, false
}

// Invalidate implements Cache. It deletes each key (value, absence or lease)
// and then reads it back on the same connection: Redis sends the key's
// invalidation push before that second reply, so when Invalidate returns
// this replica's client-side copy is gone. Other replicas drop theirs when
// the push reaches them. A failure is logged, counted and returned as
// EUNAVAILABLE, and the keys are deleted as soon as Redis answers again (up
// to maxPending keys; beyond that they stay stale until their TTL).
func (r *Redis) Invalidate(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	rkeys := make([]string, len(keys))
	for i, key := range keys {
		rkeys[i] = r.redisKey(key)
		// Later Gets in this process must not join a load that started
		// before the write.
		r.proto.forget(rkeys[i])
	}
	if err := r.invalidate(ctx, rkeys); err != nil {
		r.fail(err)
		r.m.invalidateErrors.Inc()
		kept := false
		if _, reply := rueidis.IsRedisErr(err); !reply {
			// Unreachable, not refusing: worth retrying once it answers.
			kept = r.keepPending(keys)
		}
		r.log.Error("cache: invalidation failed; retrying once Redis answers, else the keys stay cached until their TTL",
			"keys", keys, "kept_for_retry", kept, "ttl", r.opts.TTL, "err", err)
		return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "cache invalidation failed", Err: err}
	}
	r.up()
	return nil
}

// invalidate deletes Redis keys and waits for their invalidation pushes to
// be applied on this client's connection (see Invalidate).
func (r *Redis) invalidate(ctx context.Context, rkeys []string) error {
	cmds := make(rueidis.Commands, 0, 2*len(rkeys))
	for _, rkey := range rkeys {
		cmds = append(cmds,
			r.client.B().Del().Key(rkey).Build(),
			r.client.B().Exists().Key(rkey).Build())
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
	defer cancel()
	var err error
	for _, resp := range r.client.DoMulti(ctx, cmds...) {
		if e := resp.Error(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// keepPending remembers keys whose invalidation failed, up to maxPending,
// and reports whether all of them were kept.
func (r *Redis) keepPending(keys []string) bool {
	r.pendingMu.Lock()
	defer r.pendingMu.Unlock()
	if r.pending == nil {
		r.pending = make(map[string]struct{})
	}
	for _, key := range keys {
		if len(r.pending) >= maxPending {
			return false
		}
		r.pending[key] = struct{}{}
	}
	return true
}

// retryPending deletes the keys whose invalidation failed while Redis was
// unreachable. It runs when Redis answers again; keys that fail again stay
// pending.
func (r *Redis) retryPending() {
	r.pendingMu.Lock()
	keys := make([]string, 0, len(r.pending))
	for key := range r.pending {
		keys = append(keys, key)
	}
	clear(r.pending)
	r.pendingMu.Unlock()
	if len(keys) == 0 {
		return
	}
	for batch := range slices.Chunk(keys, 100) {
		rkeys := make([]string, len(batch))
		for i, key := range batch {
			rkeys[i] = r.redisKey(key)
		}
		if err := r.invalidate(context.Background(), rkeys); err != nil {
			r.keepPending(keys)
			r.fail(err)
			return
		}
	}
	r.log.Info("cache: retried the invalidations that failed while Redis was unavailable", "keys", len(keys))
}

// Close implements Cache. The rueidis client is not closed: it belongs to
// the caller, who may share it with other packages.
func (r *Redis) Close() {
	if r.near != nil {
		r.pushes.unsubscribe(r.near)
		r.near.dropAll()
	}
	r.clock.close()
	r.dl.close()
}

// nearExpiry is when a value DoCache returned leaves the near map: when its
// client-side copy expires, or a TTL from now if rueidis did not say.
func (r *Redis) nearExpiry(resp rueidis.RedisResult) int64 {
	if at := resp.CachePXAT(); at > 0 {
		return at * int64(time.Millisecond)
	}
	return r.clock.coarse() + int64(r.opts.TTL)
}

// fail notes a Redis failure. Network errors and timeouts mark Redis down
// (logged once per change of state); an error reply from a working Redis
// does not.
func (r *Redis) fail(err error) {
	if _, ok := rueidis.IsRedisErr(err); ok {
		return
	}
	if r.down.Load() {
		return
	}
	r.probeAt.Store(time.Now().Add(r.opts.RetryInterval).UnixNano())
	if r.down.CompareAndSwap(false, true) {
		r.dropNear()
		r.log.Warn("cache: Redis unavailable; loading directly and probing it again",
			"every", r.opts.RetryInterval, "err", err)
	}
}

// up notes a successful Redis call; the first after a failure logs the
// recovery, retries the invalidations that failed meanwhile and reports
// true: what that call read may be one of those stale keys.
func (r *Redis) up() bool {
	if r.down.Load() && r.down.CompareAndSwap(true, false) {
		// Pushes may have been lost meanwhile: start the near map afresh.
		r.dropNear()
		r.log.Info("cache: Redis reachable again")
		r.retryPending()
		return true
	}
	return false
}

// dropNear empties the near map, if there is one.
func (r *Redis) dropNear() {
	if r.near != nil {
		r.near.dropAll()
	}
}

// probeDue reports, while Redis is down, whether this Get should try Redis:
// one Get per RetryInterval does, the others load directly without waiting
// for a Redis that is probably still gone.
func (r *Redis) probeDue() bool {
	now := time.Now().UnixNano()
	at := r.probeAt.Load()
	return now >= at && r.probeAt.CompareAndSwap(at, now+int64(r.opts.RetryInterval))
}

// reasonOf names a Redis failure for the fallbacks metric.
func reasonOf(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return reasonTimeout
	}
	return reasonRedisError
}

// tag returns the kind byte of a stored payload, 0 for an empty one.
func tag(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}
