package limiter

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
)

// Coalesced script calls.
//
// A crowd of clients, each far below its limit but too slow to spend a
// batch before it expires, needs a script call for most of its requests.
// What such a call costs is mostly the round trip, not the script: the
// command's encoding and the wake-ups in this process, the command's
// dispatch in Redis. So concurrent calls for different buckets share one
// round trip: a call is queued, and a flusher sends everything queued as
// one call of gcraMultiScript, which runs the same decision for each
// bucket in turn under one reading of TIME. While maxFlushers such calls
// are out, the next calls queue up behind them, so the batches grow with
// the load and a lone call waits for nobody.
//
// Nothing about the decisions changes: each bucket is decided by the same
// Lua function, atomically, on the Redis clock, so every bound of the
// single call holds. On Redis Cluster the buckets of one batch live on
// different slots, which one script may not touch; there the batch is sent
// as one pipeline of single-bucket calls (rueidis routes each to its
// master), which saves the process's wake-ups but not Redis's dispatches.
//
// Calls no request waits for (prefetches, the debt flush's charges) queue
// apart and fill the room a batch has left after the requests' calls, and
// at least a quarter of it, so a flush that queues a charge for every
// client of a crowd delays no request, and a stream of requests does not
// hold the charges back.
//
// A request whose deadline passes while its call is queued or out gives up
// with EUNAVAILABLE; the call still runs when its batch goes out, and
// whatever it reserved is then lost (too few allowed, never too many).

// DefaultMaxCoalesce is how many script calls one round trip carries at
// most by default.
const DefaultMaxCoalesce = 64

// maxFlushers is how many batches may be out at once. More than one, so
// that a batch stalled on a slow reply holds up only the calls in it: the
// calls behind it go out in the next batch, each under its own deadline,
// as they would without coalescing.
const maxFlushers = 4

// scriptCall is one bucket's script call: its key and arguments formatted
// into its own buffer, and, once done is closed, its outcome.
type scriptCall struct {
	buf      []byte
	keys     [1]string
	args     [5]string
	deadline time.Time
	rep      reply
	err      error
	done     chan struct{}
	// then, when set, receives the outcome in the flusher instead of a
	// waiting caller; the call is released after it returns.
	then func(reply, error)
}

var callPool = sync.Pool{New: func() any {
	return &scriptCall{buf: make([]byte, 0, 128), done: make(chan struct{}, 1)}
}}

// format writes the key and the arguments into c.buf and points c's
// strings at them.
func (c *scriptCall) format(prefix, name, client string, t int64, burst, need, want, owed int) {
	b := append(c.buf[:0], prefix...)
	b = append(b, '{')
	b = append(b, name...)
	b = append(b, ':')
	b = append(b, client...)
	b = append(b, '}')
	var ends [6]int
	ends[0] = len(b)
	b = strconv.AppendInt(b, t, 10)
	ends[1] = len(b)
	b = strconv.AppendInt(b, int64(burst), 10)
	ends[2] = len(b)
	b = strconv.AppendInt(b, int64(need), 10)
	ends[3] = len(b)
	b = strconv.AppendInt(b, int64(want), 10)
	ends[4] = len(b)
	b = strconv.AppendInt(b, int64(owed), 10)
	ends[5] = len(b)
	c.buf = b
	// The strings are taken only now that b will not grow any more.
	c.keys[0] = unsafe.String(&b[0], ends[0])
	for i := range c.args {
		c.args[i] = unsafe.String(&b[ends[i]], ends[i+1]-ends[i])
	}
}

// release returns a finished call to the pool. Only a call nothing else
// refers to any more may be released: one given up on while queued or
// sent stays with the garbage collector.
func (c *scriptCall) release() {
	c.keys[0] = ""
	clear(c.args[:])
	c.rep, c.err, c.deadline, c.then = reply{}, nil, time.Time{}, nil
	callPool.Put(c)
}

// coalescer queues script calls and sends them in batches, up to
// maxFlushers batches at a time.
type coalescer struct {
	r       *Redis
	max     int
	cluster bool

	mu sync.Mutex
	// pending are the calls requests wait for; background are the calls
	// no request waits for (prefetches, debt charges), which a batch takes
	// in the room left and in a quarter kept for them: a flush queues a
	// charge for every client with debt at once, and a request must not
	// wait behind them all.
	pending, background []*scriptCall
	flushers            int // running flushLoops
	// maxFlushers is the package constant; tests lower it to 1 to line
	// calls up behind a held batch.
	maxFlushers int

	// noscripts counts the Cluster pipelines that found a node without
	// the script, for tests.
	noscripts atomic.Int64

	// beforeFlush, when set, runs before each batch is sent; tests use it
	// to hold the flusher while they queue calls.
	beforeFlush func()
}

func newCoalescer(r *Redis, max int) *coalescer {
	return &coalescer{r: r, max: max, cluster: r.c.Mode() == rueidis.ClientModeCluster, maxFlushers: maxFlushers}
}

// submit queues c and waits for its outcome or for ctx.
func (co *coalescer) submit(ctx context.Context, c *scriptCall) (reply, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.deadline = dl
	} else {
		c.deadline = time.Now().Add(prefetchTimeout)
	}
	start := co.push(c, &co.pending)
	if start && !co.r.startBackground(co.flushLoop) {
		// Closed: nobody will flush, so this caller does it itself.
		co.flushLoop()
	}
	select {
	case <-c.done:
		rep, err := c.rep, c.err
		c.release()
		return rep, err
	case <-ctx.Done():
		return reply{}, unavailable(ctx.Err())
	}
}

// enqueue queues a call whose outcome goes to c.then, without waiting.
// The caller holds r.closeMu for reading and has seen r.closed false.
func (co *coalescer) enqueue(c *scriptCall) {
	if co.push(c, &co.background) {
		co.r.wg.Add(1)
		go func() {
			defer co.r.wg.Done()
			co.flushLoop()
		}()
	}
}

// push queues c on q, one of co's queues, and reports whether the caller
// must start a flushLoop, which it then counts as running.
func (co *coalescer) push(c *scriptCall, q *[]*scriptCall) bool {
	co.mu.Lock()
	defer co.mu.Unlock()
	*q = append(*q, c)
	if co.flushers >= co.maxFlushers {
		return false
	}
	co.flushers++
	return true
}

// finish hands a call its outcome.
func (c *scriptCall) finish() {
	if c.then != nil {
		c.then(c.rep, c.err)
		c.release()
		return
	}
	c.done <- struct{}{}
}

// queued counts the calls waiting for the next batch, for tests.
func (co *coalescer) queued() int {
	co.mu.Lock()
	defer co.mu.Unlock()
	return len(co.pending) + len(co.background)
}

// take moves up to n calls from the front of q to batch. The caller holds
// co.mu.
func take(batch []*scriptCall, q *[]*scriptCall, n int) []*scriptCall {
	n = min(n, len(*q))
	batch = append(batch, (*q)[:n]...)
	rest := copy(*q, (*q)[n:])
	clear((*q)[rest:])
	*q = (*q)[:rest]
	return batch
}

// flushLoop sends batches until the queue is empty.
func (co *coalescer) flushLoop() {
	var f flusher
	for {
		co.mu.Lock()
		if len(co.pending)+len(co.background) == 0 {
			co.flushers--
			co.mu.Unlock()
			return
		}
		// Requests' calls first, then background ones in the room left;
		// a quarter of a batch is kept for background calls waiting, so
		// that a stream of requests cannot hold them back for ever (a
		// request for a bucket whose charge is queued waits for it).
		keep := min(len(co.background), co.max/4)
		f.batch = take(f.batch[:0], &co.pending, co.max-keep)
		f.batch = take(f.batch, &co.background, co.max-len(f.batch))
		co.mu.Unlock()
		if co.beforeFlush != nil {
			co.beforeFlush()
		}
		// A call whose caller's deadline has passed is not sent: its
		// caller is gone, and what it reserved would only be lost.
		now, live := time.Now(), f.batch[:0]
		for _, c := range f.batch {
			if now.Before(c.deadline) {
				live = append(live, c)
				continue
			}
			c.err = unavailable(context.DeadlineExceeded)
			c.finish()
		}
		if len(live) > 0 {
			co.flush(&f, live)
		}
		clear(f.batch)
	}
}

// flusher is one flushLoop's scratch space, reused from batch to batch.
type flusher struct {
	batch []*scriptCall
	keys  []string
	args  []string
	execs []rueidis.LuaExec
	cmds  rueidis.Commands
	again []int // indexes of the calls a node answered NOSCRIPT
}

// flush sends one batch under the latest of its callers' deadlines and
// hands every call its outcome.
func (co *coalescer) flush(f *flusher, batch []*scriptCall) {
	dl := batch[0].deadline
	for _, c := range batch[1:] {
		if c.deadline.After(dl) {
			dl = c.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	r := co.r
	r.updates.Add(int64(len(batch)))
	switch {
	case len(batch) == 1:
		r.calls.Add(1)
		batch[0].rep, batch[0].err = r.exec1(ctx, batch[0])
	case co.cluster:
		// One pipeline; each call goes to its own slot's master, so each
		// counts as a round trip of its own.
		r.calls.Add(int64(len(batch)))
		co.evalshaMulti(ctx, f, batch)
	default:
		r.calls.Add(1)
		f.keys, f.args = f.keys[:0], f.args[:0]
		for _, c := range batch {
			f.keys = append(f.keys, c.keys[0])
			f.args = append(f.args, c.args[:]...)
		}
		vals, err := gcraMultiScript.Exec(ctx, r.c, f.keys, f.args).ToArray()
		if err == nil && len(vals) != 6*len(batch) {
			err = errBadReply
		}
		for i, c := range batch {
			if err != nil {
				c.err = unavailable(err)
				continue
			}
			c.rep, c.err = decodeReply(vals[6*i : 6*i+6])
		}
		clear(f.keys)
		clear(f.args)
	}
	for _, c := range batch {
		c.finish()
	}
}

// evalshaMulti sends the calls of batch, one bucket each, as one pipeline
// of EVALSHA. Preload put the script on every node, so rueidis's
// ExecMulti, which sends SCRIPT LOAD to every node before each pipeline,
// would double the work of every batch. A node that answers NOSCRIPT (it
// restarted, failed over, or joined) ran nothing, so only its calls are
// sent again, through ExecMulti, which loads the script everywhere first;
// the calls other nodes ran are not sent twice.
func (co *coalescer) evalshaMulti(ctx context.Context, f *flusher, batch []*scriptCall) {
	c := co.r.c
	f.cmds = f.cmds[:0]
	for _, call := range batch {
		f.cmds = append(f.cmds, c.B().Evalsha().Sha1(gcraSHA1).Numkeys(1).Key(call.keys[0]).Arg(call.args[:]...).Build())
	}
	f.again, f.execs = f.again[:0], f.execs[:0]
	for i, res := range c.DoMulti(ctx, f.cmds...) {
		if err, ok := rueidis.IsRedisErr(res.Error()); ok && err.IsNoScript() {
			f.again = append(f.again, i)
			f.execs = append(f.execs, rueidis.LuaExec{Keys: batch[i].keys[:], Args: batch[i].args[:]})
			continue
		}
		batch[i].rep, batch[i].err = decodeResult(res)
	}
	clear(f.cmds)
	if len(f.again) == 0 {
		return
	}
	co.noscripts.Add(1)
	for j, res := range gcraScript.ExecMulti(ctx, c, f.execs...) {
		batch[f.again[j]].rep, batch[f.again[j]].err = decodeResult(res)
	}
	clear(f.execs)
}

// decodeResult decodes the reply of one single-bucket call.
func decodeResult(res rueidis.RedisResult) (reply, error) {
	vals, err := res.ToArray()
	if err != nil {
		return reply{}, unavailable(err)
	}
	if len(vals) != 6 {
		return reply{}, unavailable(errBadReply)
	}
	return decodeReply(vals)
}
