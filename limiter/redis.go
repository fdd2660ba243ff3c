package limiter

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	apiperf "github.com/api-perf/api-perf"
	"github.com/api-perf/api-perf/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// gcraScript is the whole Redis side of the limiter: one atomic script, one
// round trip. It reads the clock from Redis TIME so that every replica uses
// the same clock, keeps every quantity in integer microseconds (Redis time
// in microseconds is about 2^51, exact in a Lua double), and writes the TAT
// with string.format('%d') because Redis would otherwise turn a Lua number
// into a 14-significant-digit float string and lose the low digits.
//
// Besides deciding one request of cost need, the script can hand out a
// batch: when the bucket has room it takes up to want tokens, but never
// more than half of what is available, so that other replicas always find
// tokens left and a client near its limit gets batches that shrink to one.
//
// Before deciding, the script charges owed units that a replica has
// already allowed on debt (see batch.go): they move the TAT whatever the
// bucket holds, past its window if need be, so the client pays for them
// with later refusals.
//
// KEYS[1] holds the TAT. ARGV: interval (µs), burst, need, want, owed.
// need is at most burst: a larger cost is refused before the call, as no
// wait could let it through. need is 0 for a call that only charges debt
// and takes a batch if there is room.
// Reply: {granted, remaining, retry_after_us, reset_after_us, now_us, tat_us}
// where granted is 0 for a refusal (or no batch), retry_after_us is then
// the wait for max(need, 1) units, reset_after_us is the time until the
// bucket is full again, and tat_us is the TAT after the owed units and
// before the grant (granted tokens occupy the slots tat+interval ..
// tat+granted*interval).
//
// gcraMultiScript is the same decision for several buckets in one call
// (see coalesce.go): KEYS[i] with ARGV[5i-4 .. 5i], and the replies one
// after the other, six numbers each. All of them use one reading of TIME.
var (
	gcraScript      = rueidis.NewLuaScript(gcraSource)
	gcraMultiScript = rueidis.NewLuaScript(gcraMultiSource)
	// gcraSHA1 names gcraScript for the EVALSHA pipelines on Cluster.
	gcraSHA1 = func() string { h := sha1.Sum([]byte(gcraSource)); return hex.EncodeToString(h[:]) }()
)

// gcraFunc is the decision itself, shared by both scripts so that they
// cannot drift apart.
const gcraFunc = `
local function gcra(key, interval, burst, need, want, owed, now, out)
  local window = burst * interval
  local tat = tonumber(redis.call('GET', key) or 0)
  if tat < now then tat = now end
  tat = tat + owed * interval
  local avail = math.floor((window - (tat - now)) / interval)
  local remaining = avail
  if remaining < 0 then remaining = 0 end
  local grant = 0
  if avail >= need then
    grant = math.floor(avail / 2)
    if grant > want then grant = want end
    if grant < need then grant = need end
  end
  local newtat = tat + grant * interval
  if grant > 0 or owed > 0 then
    redis.call('SET', key, string.format('%d', newtat),
      'PX', string.format('%d', math.ceil((newtat - now) / 1000)))
  end
  local n = #out
  out[n+5] = now
  out[n+6] = tat
  if grant == 0 then
    local unit = need
    if unit < 1 then unit = 1 end
    out[n+1] = 0
    out[n+2] = remaining
    out[n+3] = tat + unit * interval - window - now
    out[n+4] = tat - now
    return
  end
  out[n+1] = grant
  out[n+2] = avail - grant
  out[n+3] = 0
  out[n+4] = newtat - now
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
`

const gcraSource = gcraFunc + `
gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), now, out)
return out
`

const gcraMultiSource = gcraFunc + `
for i = 1, #KEYS do
  local a = (i - 1) * 5
  gcra(KEYS[i], tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3]), tonumber(ARGV[a+4]), tonumber(ARGV[a+5]), now, out)
end
return out
`

// DefaultPrefix starts every limiter key. The client part of the key sits
// inside a hash tag, so the script's single key routes on Redis Cluster.
const DefaultPrefix = "apiperf:rl:"

// DefaultBatchWindow is how much of a policy's rate a process reserves in
// one round trip when batching: 100ms worth of tokens.
const DefaultBatchWindow = 100 * time.Millisecond

// DefaultMaxClients is the default RedisOptions.MaxClients: about 250 bytes
// each, some 50 MB at most.
const DefaultMaxClients = 200_000

// DefaultDebtDelay is how often debt waiting to be charged is sent.
const DefaultDebtDelay = time.Second

// minDebtDelay is the shortest DebtDelay: a shorter one (1ns, say) would
// run the flush loop without pause, a core's worth of CPU for nothing.
const minDebtDelay = time.Millisecond

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Prefix starts every key; the full key is
	// Prefix + "{" + policy name + ":" + client key + "}".
	// Empty means DefaultPrefix. Tests use unique prefixes.
	Prefix string

	// Plain turns batching off: every decision is one script call. The
	// default (false) reserves tokens in batches, see batch.go.
	Plain bool

	// BatchWindow sizes a batch as the number of tokens the policy refills
	// in that time (at least one). Zero means DefaultBatchWindow.
	BatchWindow time.Duration

	// MaxBatch caps a batch in tokens; zero means no cap other than half of
	// what the bucket has available.
	MaxBatch int

	// Debt is how many units of cost a process may allow a client on debt,
	// before Redis has charged them, when its last reply for that client
	// showed the bucket at least half free (see batch.go). Such a request
	// waits for nothing; the charge goes out in the background, coalesced
	// with others. A process never owes more than an eighth of a policy's
	// burst, so policies with a burst under 8 stay exact. Across N
	// processes a client may then be allowed up to N*min(Debt, burst/8)
	// more than burst + rate*t. Zero (the default) keeps every decision
	// exact. It does nothing with Plain.
	Debt int

	// DebtDelay is how long debt may wait before it is charged, so that
	// the requests of a slow client share one charge: debt goes out when it
	// reaches the cap above or at the next flush, every DebtDelay. Zero
	// means DefaultDebtDelay; a negative value charges every debt at once
	// (a charge that fails is then retried every DefaultDebtDelay). A
	// positive value under a millisecond counts as a millisecond.
	DebtDelay time.Duration

	// MaxClients caps the buckets a process keeps (reservations, last
	// reply, debt), so that a flood of distinct clients cannot grow its
	// memory without end. Beyond it, a new client is decided by one script
	// call per request, exactly, until idle buckets make room. Zero means
	// DefaultMaxClients; negative means no cap.
	MaxClients int

	// MaxCoalesce is the most script calls, for different buckets, sent
	// in one round trip (see coalesce.go). Zero means DefaultMaxCoalesce;
	// 1 sends every call on its own.
	MaxCoalesce int

	// Registerer, when set, receives apiperf_ratelimit_redis_calls_total,
	// the script calls made, which divided by the requests decided says
	// what the limiter costs Redis. Registering twice on the same
	// Registerer keeps the first counter; a conflicting collector of that
	// name is NewRedis's error.
	Registerer prometheus.Registerer
}

// Redis is a GCRA limiter whose state lives in Redis, shared by every
// replica. By default it reserves tokens in batches and spends them in
// process (exact, see batch.go); with RedisOptions.Plain every decision is
// one EVALSHA. It never closes the rueidis client, which its creator owns.
type Redis struct {
	c           rueidis.Client
	prefix      string
	plain       bool
	batchWindow int64 // microseconds
	maxBatch    int
	debt        int
	debtDelay   time.Duration // 0: every debt is charged at once
	shardCap    int           // buckets per table shard; 0: no cap

	debts debtQueue // buckets whose debt waits for the next flush

	buckets table[*bucket]
	co      *coalescer   // nil when every call goes on its own
	calls   atomic.Int64 // script round trips, for tests and benchmarks
	refills atomic.Int64 // the calls a request waited for
	// updates counts the buckets the script calls decided or charged,
	// several to a call when coalesced: Redis's work, for benchmarks.
	updates atomic.Int64
	// untracked counts the decisions made without a bucket, over MaxClients.
	untracked atomic.Int64
	closeMu   sync.RWMutex // orders prefetch starts before Close's wait
	closed    bool
	closing   atomic.Bool    // set as Close begins: no more debt
	wg        sync.WaitGroup // background calls, and requests' calls begun before Close
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter that keeps its buckets in Redis through c.
// It fails only when its metric cannot be registered (see promreg).
func NewRedis(c rueidis.Client, opts RedisOptions) (*Redis, error) {
	r := &Redis{
		c:           c,
		prefix:      opts.Prefix,
		plain:       opts.Plain,
		batchWindow: opts.BatchWindow.Microseconds(),
		maxBatch:    opts.MaxBatch,
		debt:        max(opts.Debt, 0),
	}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.batchWindow <= 0 {
		r.batchWindow = DefaultBatchWindow.Microseconds()
	}
	r.buckets.init()
	if maxClients := cmp.Or(opts.MaxClients, DefaultMaxClients); maxClients > 0 {
		r.shardCap = (maxClients + tableShards - 1) / tableShards
	}
	if opts.MaxCoalesce != 1 {
		r.co = newCoalescer(r, cmp.Or(opts.MaxCoalesce, DefaultMaxCoalesce))
	}
	if opts.Registerer != nil {
		// Func metrics read what the limiter already keeps, so they cost
		// the requests nothing. A second limiter on the same registry
		// shares the first's series.
		for _, c := range []prometheus.Collector{
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "apiperf_ratelimit_redis_calls_total",
				Help: "Round trips of the rate limiter to Redis (script calls, each deciding one or more requests).",
			}, func() float64 { return float64(r.calls.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "apiperf_ratelimit_clients",
				Help: "Clients the rate limiter keeps in process (reservations, last reply, debt), at most RATE_LIMIT_MAX_CLIENTS.",
			}, func() float64 { return float64(r.buckets.len()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "apiperf_ratelimit_untracked_total",
				Help: "Rate-limit decisions made by one Redis call each because the process already keeps RATE_LIMIT_MAX_CLIENTS clients.",
			}, func() float64 { return float64(r.untracked.Load()) }),
		} {
			if _, err := promreg.Register(opts.Registerer, c); err != nil {
				return nil, err
			}
		}
	}
	if r.debt > 0 && !r.plain {
		// With debt charged at once the loop only retries failed charges.
		period := DefaultDebtDelay
		if opts.DebtDelay >= 0 {
			r.debtDelay = max(cmp.Or(opts.DebtDelay, DefaultDebtDelay), minDebtDelay)
			period = r.debtDelay
		}
		r.debts.start(r, period)
	}
	return r, nil
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, p apiperf.RatePolicy, cost int) (apiperf.RateDecision, error) {
	t, err := interval(&p, cost)
	if err != nil {
		return apiperf.RateDecision{}, err
	}
	if r.plain {
		return r.plainAllow(ctx, key, &p, t, cost)
	}
	return r.allowBatched(ctx, key, &p, t, cost)
}

// plainAllow decides one request with one script call and keeps nothing.
func (r *Redis) plainAllow(ctx context.Context, key string, p *apiperf.RatePolicy, t int64, cost int) (apiperf.RateDecision, error) {
	rep, err := r.eval(ctx, p.Name, key, t, p.Burst, cost, cost, 0)
	if err != nil {
		return apiperf.RateDecision{}, err
	}
	return rep.result(p.Burst), nil
}

// Preload loads the script on every Redis node, so that the first
// decisions (each under the fallback's few-millisecond deadline) do not pay
// for a NOSCRIPT reply and a full EVAL. It doubles as a readiness check.
// Redis forgets scripts when it restarts; Exec then reloads by itself.
func (r *Redis) Preload(ctx context.Context) error {
	for _, n := range r.c.Nodes() {
		for _, src := range []string{gcraSource, gcraMultiSource} {
			if err := n.Do(ctx, n.B().ScriptLoad().Script(src).Build()).Error(); err != nil {
				return unavailable(err)
			}
		}
	}
	return nil
}

// Close implements Limiter. It charges the debt waiting for a flush, waits
// for background calls and, with debt on, for the calls of requests begun
// before it (their return may charge debt taken meanwhile), forgets the tokens
// reserved in process (they stay counted in Redis until their time passes)
// and leaves the client open.
func (r *Redis) Close() {
	r.closing.Store(true)
	r.debts.stop(r)
	r.closeMu.Lock()
	r.closed = true
	r.closeMu.Unlock()
	r.wg.Wait()
	r.buckets.clear()
}

// hold counts a call that Close must wait for, unless Close has begun
// waiting, and reports whether it did; the caller then calls r.wg.Done.
func (r *Redis) hold() bool {
	r.closeMu.RLock()
	defer r.closeMu.RUnlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// startBackground runs fn in a goroutine that Close waits for, unless the
// limiter is closed, and reports whether it did.
func (r *Redis) startBackground(fn func()) bool {
	if !r.hold() {
		return false
	}
	go func() {
		defer r.wg.Done()
		fn()
	}()
	return true
}

// reply is the decoded answer of gcraScript.
type reply struct {
	granted, remaining, retryAfter, resetAfter, now, tat int64
}

// result turns a reply for a plain (unbatched) call into a decision.
func (rep *reply) result(burst int) apiperf.RateDecision {
	res := apiperf.RateDecision{
		Allowed:    rep.granted > 0,
		Limit:      burst,
		Remaining:  int(rep.remaining),
		ResetAfter: micros(rep.resetAfter),
	}
	if !res.Allowed {
		res.RetryAfter = micros(rep.retryAfter)
	}
	return res
}

// eval runs gcraScript once for one bucket, coalesced with the calls of
// other requests when that is on (see coalesce.go). Errors come back as
// apiperf.EUNAVAILABLE.
func (r *Redis) eval(ctx context.Context, name, client string, t int64, burst, need, want, owed int) (reply, error) {
	c := callPool.Get().(*scriptCall)
	c.format(r.prefix, name, client, t, burst, need, want, owed)
	if r.co == nil {
		r.calls.Add(1)
		r.updates.Add(1)
		rep, err := r.exec1(ctx, c)
		if err != nil {
			// After a failure (a deadline above all) the command may still
			// sit in the client's write queue pointing at buf, so the call
			// is left to the garbage collector instead of the pool.
			return reply{}, err
		}
		c.release()
		return rep, nil
	}
	return r.co.submit(ctx, c)
}

// exec1 runs gcraScript for one call.
func (r *Redis) exec1(ctx context.Context, c *scriptCall) (reply, error) {
	vals, err := gcraScript.Exec(ctx, r.c, c.keys[:], c.args[:]).ToArray()
	if err != nil {
		return reply{}, unavailable(err)
	}
	if len(vals) != 6 {
		return reply{}, unavailable(errBadReply)
	}
	return decodeReply(vals)
}

// decodeReply reads the six numbers of one bucket's reply.
func decodeReply(vals []rueidis.RedisMessage) (reply, error) {
	var out [6]int64
	for i := range out {
		v, err := vals[i].AsInt64()
		if err != nil {
			return reply{}, unavailable(err)
		}
		out[i] = v
	}
	return reply{out[0], out[1], out[2], out[3], out[4], out[5]}, nil
}

var errBadReply = &apiperf.Error{Code: apiperf.EINTERNAL, Message: "unexpected rate limiter script reply"}

// unavailable wraps a store failure in the domain error the server maps to
// 503; Fallback treats it as a reason to decide in process.
func unavailable(err error) error {
	return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "rate limiter unavailable", Err: err}
}
