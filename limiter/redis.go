package limiter

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	apiperf "github.com/api-perf/api-perf"
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
// KEYS[1] holds the TAT. ARGV: interval (µs), burst, need, want.
// need is at most burst: a larger cost is refused before the call, as no
// wait could let it through.
// Reply: {granted, remaining, retry_after_us, reset_after_us, now_us, tat_us}
// where granted is 0 for a refusal, reset_after_us is the time until the
// bucket is full again, and tat_us is the TAT before this call (granted
// tokens occupy the slots tat+interval .. tat+granted*interval).
var gcraScript = rueidis.NewLuaScript(gcraSource)

const gcraSource = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local window = burst * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local avail = math.floor((window - (tat - now)) / interval)
local remaining = avail
if remaining < 0 then remaining = 0 end
if avail < need then
  return {0, remaining, tat + need * interval - window - now, tat - now, now, tat}
end
local grant = math.floor(avail / 2)
if grant > want then grant = want end
if grant < need then grant = need end
local newtat = tat + grant * interval
redis.call('SET', KEYS[1], string.format('%d', newtat),
  'PX', string.format('%d', math.ceil((newtat - now) / 1000)))
return {grant, avail - grant, 0, newtat - now, now, tat}
`

// DefaultPrefix starts every limiter key. The client part of the key sits
// inside a hash tag, so the script's single key routes on Redis Cluster.
const DefaultPrefix = "apiperf:rl:"

// DefaultBatchWindow is how much of a policy's rate a process reserves in
// one round trip when batching: 100ms worth of tokens.
const DefaultBatchWindow = 100 * time.Millisecond

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

	buckets table[*bucket]
	calls   atomic.Int64 // script round trips, for tests and benchmarks
	refills atomic.Int64 // the calls a request waited for
	closeMu sync.RWMutex // orders prefetch starts before Close's wait
	closed  bool
	wg      sync.WaitGroup // background prefetches
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter that keeps its buckets in Redis through c.
func NewRedis(c rueidis.Client, opts RedisOptions) *Redis {
	r := &Redis{
		c:           c,
		prefix:      opts.Prefix,
		plain:       opts.Plain,
		batchWindow: opts.BatchWindow.Microseconds(),
		maxBatch:    opts.MaxBatch,
	}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.batchWindow <= 0 {
		r.batchWindow = DefaultBatchWindow.Microseconds()
	}
	r.buckets.init()
	return r
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, p apiperf.RatePolicy, cost int) (apiperf.RateDecision, error) {
	t, err := interval(&p, cost)
	if err != nil {
		return apiperf.RateDecision{}, err
	}
	if r.plain {
		rep, err := r.eval(ctx, p.Name, key, t, p.Burst, cost, cost)
		if err != nil {
			return apiperf.RateDecision{}, err
		}
		return rep.result(p.Burst), nil
	}
	return r.allowBatched(ctx, key, &p, t, cost)
}

// Preload loads the script on every Redis node, so that the first
// decisions (each under the fallback's few-millisecond deadline) do not pay
// for a NOSCRIPT reply and a full EVAL. It doubles as a readiness check.
// Redis forgets scripts when it restarts; Exec then reloads by itself.
func (r *Redis) Preload(ctx context.Context) error {
	for _, n := range r.c.Nodes() {
		if err := n.Do(ctx, n.B().ScriptLoad().Script(gcraSource).Build()).Error(); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// Close implements Limiter. It waits for background calls, forgets the
// tokens reserved in process (they stay counted in Redis until their time
// passes) and leaves the client open.
func (r *Redis) Close() {
	r.closeMu.Lock()
	r.closed = true
	r.closeMu.Unlock()
	r.wg.Wait()
	r.buckets.clear()
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

// scriptArgs holds one call's key and arguments. The strings point into buf,
// so a call formats its numbers without allocating; the whole struct is
// reused through argsPool.
type scriptArgs struct {
	buf  []byte
	keys [1]string
	args [4]string
}

var argsPool = sync.Pool{New: func() any { return &scriptArgs{buf: make([]byte, 0, 128)} }}

// eval runs gcraScript once. Errors come back as apiperf.EUNAVAILABLE.
func (r *Redis) eval(ctx context.Context, name, client string, t int64, burst, need, want int) (rep reply, err error) {
	a := argsPool.Get().(*scriptArgs)
	b := append(a.buf[:0], r.prefix...)
	b = append(b, '{')
	b = append(b, name...)
	b = append(b, ':')
	b = append(b, client...)
	b = append(b, '}')
	var ends [5]int
	ends[0] = len(b)
	b = strconv.AppendInt(b, t, 10)
	ends[1] = len(b)
	b = strconv.AppendInt(b, int64(burst), 10)
	ends[2] = len(b)
	b = strconv.AppendInt(b, int64(need), 10)
	ends[3] = len(b)
	b = strconv.AppendInt(b, int64(want), 10)
	ends[4] = len(b)
	a.buf = b
	// The strings are taken only now that b will not grow any more.
	a.keys[0] = unsafe.String(&b[0], ends[0])
	for i := range a.args {
		a.args[i] = unsafe.String(&b[ends[i]], ends[i+1]-ends[i])
	}

	r.calls.Add(1)
	vals, err := gcraScript.Exec(ctx, r.c, a.keys[:], a.args[:]).ToArray()
	if err != nil {
		// After a failure (a deadline above all) the command may still sit
		// in the client's write queue pointing at buf, so the buffer is left
		// to the garbage collector instead of going back to the pool.
		return reply{}, unavailable(err)
	}
	a.keys[0] = ""
	clear(a.args[:])
	argsPool.Put(a)
	if len(vals) != 6 {
		return reply{}, unavailable(errBadReply)
	}
	var out [6]int64
	for i := range vals {
		if out[i], err = vals[i].AsInt64(); err != nil {
			return reply{}, unavailable(err)
		}
	}
	return reply{out[0], out[1], out[2], out[3], out[4], out[5]}, nil
}

var errBadReply = &apiperf.Error{Code: apiperf.EINTERNAL, Message: "unexpected rate limiter script reply"}

// unavailable wraps a store failure in the domain error the server maps to
// 503; Fallback treats it as a reason to decide in process.
func unavailable(err error) error {
	return &apiperf.Error{Code: apiperf.EUNAVAILABLE, Message: "rate limiter unavailable", Err: err}
}
