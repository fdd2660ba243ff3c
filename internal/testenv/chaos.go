package testenv

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Faults is what a ChaosProxy does to the traffic it forwards. Rates are
// probabilities per forwarded chunk (a read from one side; with MySQL set,
// one protocol packet from the client), drawn from a random stream seeded
// by Seed and the connection's ordinal, so a run with the same seed makes
// the same decisions for the same connection and the same traffic.
type Faults struct {
	Seed uint64
	// CutRate cuts the connection, in both directions, instead of
	// forwarding a chunk: half of the cuts close it, half reset it.
	CutRate float64
	// DelayRate holds a chunk back for up to MaxDelay (a latency spike)
	// before forwarding it; the other direction keeps flowing meanwhile.
	DelayRate float64
	MaxDelay  time.Duration
	// Latency holds every chunk back for this long (a slow network).
	Latency time.Duration
	// MySQL reads the client's stream as MySQL protocol packets, which
	// makes COMMIT recognisable (the proxy must see plaintext: no TLS).
	MySQL bool
	// CommitCutRate cuts a connection at a COMMIT: half of the time before
	// forwarding it (the server rolls back when it sees the cut), half of
	// the time after (the server commits, and its answer never arrives).
	CommitCutRate float64
}

// ChaosStats counts what a ChaosProxy did, and, with Faults.MySQL, the
// commands clients sent that the server answers: each is a round trip.
type ChaosStats struct {
	Conns, Cuts, Delays, CommitsCutBefore, CommitsCutAfter int64
	Commands                                               int64
}

func (s ChaosStats) String() string {
	return fmt.Sprintf("%d connections, %d random cuts, %d latency spikes, %d COMMITs cut before and %d after forwarding",
		s.Conns, s.Cuts, s.Delays, s.CommitsCutBefore, s.CommitsCutAfter)
}

// ChaosProxy is a TCP proxy on a loopback port that injects faults into the
// traffic between a client and a real service: random cuts in either
// direction, latency spikes, and, for MySQL, cuts aimed at COMMIT. Every
// fault is logged with its connection and time, so that a failing test can
// print what happened; the same seed replays the same decisions.
type ChaosProxy struct {
	tb     testing.TB
	target string
	addr   string
	ln     net.Listener
	start  time.Time

	mu      sync.Mutex
	faults  Faults
	conns   map[*chaosConn]struct{}
	events  []string
	closed  bool
	next    uint64
	forcing []commitAction // targeted COMMIT faults still to make, in order

	stats struct{ conns, cuts, delays, before, after, commands atomic.Int64 }
}

// NewChaosProxy starts a proxy to target with faults f; it stops, cutting
// every connection, when the test ends.
func NewChaosProxy(tb testing.TB, target string, f Faults) *ChaosProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &ChaosProxy{tb: tb, target: target, addr: ln.Addr().String(), ln: ln, start: time.Now(),
		faults: f, conns: map[*chaosConn]struct{}{}}
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *ChaosProxy) Addr() string { return p.addr }

// SetFaults changes the faults for chunks forwarded from now on (a quiet
// phase, say, with the zero Faults but the same Seed and MySQL setting).
func (p *ChaosProxy) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
}

// commitAction is a targeted fault for one COMMIT.
type commitAction struct {
	cut, after bool
	hold       time.Duration
}

// CutNextCommit makes the next COMMIT the proxy sees cut its connection:
// before forwarding it when after is false, after the server has carried
// it out (once its answer starts arriving, which is then dropped) when
// after is true. Targeted faults queue up. They need Faults.MySQL.
func (p *ChaosProxy) CutNextCommit(after bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forcing = append(p.forcing, commitAction{cut: true, after: after})
}

// HoldNextCommit holds the next COMMIT back for d before forwarding it, as
// a slow network would, while its connection stays open.
func (p *ChaosProxy) HoldNextCommit(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forcing = append(p.forcing, commitAction{hold: d})
}

// CutAll cuts every open connection; new ones are still accepted.
func (p *ChaosProxy) CutAll() {
	p.mu.Lock()
	conns := make([]*chaosConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.cut(false)
	}
}

// Stats counts the faults injected so far.
func (p *ChaosProxy) Stats() ChaosStats {
	return ChaosStats{p.stats.conns.Load(), p.stats.cuts.Load(), p.stats.delays.Load(), p.stats.before.Load(), p.stats.after.Load(),
		p.stats.commands.Load()}
}

// Events is the fault log, one line per fault, in the order they happened.
func (p *ChaosProxy) Events() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.events...)
}

// Close stops accepting and cuts every connection.
func (p *ChaosProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.CutAll()
}

func (p *ChaosProxy) logf(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs ", time.Since(p.start).Seconds()) + fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, line)
}

func (p *ChaosProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.next++
		cc := &chaosConn{p: p, id: p.next, client: c}
		p.conns[cc] = struct{}{}
		p.mu.Unlock()
		p.stats.conns.Add(1)
		go cc.run()
	}
}

// chaosConn is one proxied connection.
type chaosConn struct {
	p      *ChaosProxy
	id     uint64
	client net.Conn

	mu     sync.Mutex
	server net.Conn
	done   bool
	// dropReply is set once a COMMIT has been forwarded that must lose its
	// answer: the server's next bytes cut the connection instead.
	dropReply atomic.Bool
}

func (c *chaosConn) run() {
	server, err := net.DialTimeout("tcp", c.p.target, 5*time.Second)
	if err != nil {
		c.cut(false)
		return
	}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		server.Close()
		return
	}
	c.server = server
	c.mu.Unlock()
	seed := c.p.seed()
	up := rand.New(rand.NewPCG(seed, 2*c.id))
	down := rand.New(rand.NewPCG(seed, 2*c.id+1))
	go c.pump("server->client", server, c.client, down, false)
	c.pump("client->server", c.client, server, up, c.p.mysql())
}

func (p *ChaosProxy) seed() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults.Seed
}

func (p *ChaosProxy) mysql() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults.MySQL
}

func (p *ChaosProxy) current() Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

// takeForced returns the next targeted COMMIT fault, if one is queued.
func (p *ChaosProxy) takeForced() (commitAction, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.forcing) == 0 {
		return commitAction{}, false
	}
	a := p.forcing[0]
	p.forcing = p.forcing[1:]
	return a, true
}

// pump forwards src to dst chunk by chunk, injecting faults, until either
// side ends; it then cuts the whole connection.
func (c *chaosConn) pump(dir string, src, dst net.Conn, rng *rand.Rand, mysqlFraming bool) {
	defer c.cut(false)
	buf := make([]byte, 32<<10)
	for {
		var chunk []byte
		var err error
		if mysqlFraming {
			chunk, err = readPacket(src, buf)
		} else {
			var n int
			n, err = src.Read(buf)
			chunk = buf[:n]
		}
		if len(chunk) == 0 {
			return
		}
		f := c.p.current()
		// Each decision draws from the stream whether or not it applies,
		// so changing one rate does not shift the others' draws.
		delay, spike := rng.Float64() < f.DelayRate, rng.Float64()
		cut, reset := rng.Float64() < f.CutRate, rng.IntN(2) == 0
		commitCut, commitAfter := rng.Float64() < f.CommitCutRate, rng.IntN(2) == 0
		if delay && f.MaxDelay > 0 {
			d := time.Duration(spike * float64(f.MaxDelay))
			c.p.stats.delays.Add(1)
			c.p.logf("conn %d %s: latency spike %v", c.id, dir, d.Round(time.Millisecond))
			time.Sleep(d)
		}
		if f.Latency > 0 {
			time.Sleep(f.Latency)
		}
		if dir == "server->client" && c.dropReply.Load() {
			c.p.stats.after.Add(1)
			c.p.logf("conn %d: cut after forwarding COMMIT (its answer is dropped)", c.id)
			c.cut(reset)
			return
		}
		if mysqlFraming && isCommit(chunk) {
			if a, ok := c.p.takeForced(); ok {
				commitCut, commitAfter = a.cut, a.after
				if a.hold > 0 {
					c.p.logf("conn %d: COMMIT held back for %v", c.id, a.hold)
					time.Sleep(a.hold)
				}
			}
			if commitCut && !commitAfter {
				c.p.stats.before.Add(1)
				c.p.logf("conn %d: cut before forwarding COMMIT", c.id)
				c.cut(reset)
				return
			}
			if commitCut {
				c.dropReply.Store(true)
			}
		} else if cut {
			c.p.stats.cuts.Add(1)
			c.p.logf("conn %d %s: cut (reset=%v) instead of forwarding %d bytes", c.id, dir, reset, len(chunk))
			c.cut(reset)
			return
		}
		if mysqlFraming && isCommand(chunk) {
			c.p.stats.commands.Add(1)
		}
		if _, werr := dst.Write(chunk); werr != nil {
			return
		}
		if err != nil {
			return
		}
	}
}

// readPacket reads one MySQL protocol packet (4-byte header, then the
// payload it announces) into buf, growing it when needed.
func readPacket(r io.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return nil, err
	}
	n := int(buf[0]) | int(buf[1])<<8 | int(buf[2])<<16
	if 4+n > len(buf) {
		buf = append(buf[:4], make([]byte, n)...)
	}
	if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
		return nil, err
	}
	return buf[:4+n], nil
}

// isCommand reports a packet that starts a command the server answers: the
// first packet of an exchange (sequence 0), other than COM_QUIT and
// COM_STMT_CLOSE, which get no answer.
func isCommand(pkt []byte) bool {
	return len(pkt) >= 5 && pkt[3] == 0 && pkt[4] != 0x01 && pkt[4] != 0x19
}

// isCommit reports a COM_QUERY packet whose statement is COMMIT.
func isCommit(pkt []byte) bool {
	if len(pkt) < 5 || pkt[4] != 0x03 {
		return false
	}
	q := bytes.TrimRight(bytes.TrimSpace(pkt[5:]), ";")
	return strings.EqualFold(string(q), "COMMIT")
}

// cut closes both sides; with reset, the client side is reset rather than
// closed (no FIN: the peer's next read fails).
func (c *chaosConn) cut(reset bool) {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	c.done = true
	server := c.server
	c.mu.Unlock()
	if tc, ok := c.client.(*net.TCPConn); ok && reset {
		tc.SetLinger(0) //nolint:errcheck // best effort: a plain close is a cut too
	}
	c.client.Close()
	if server != nil {
		server.Close()
	}
	c.p.mu.Lock()
	delete(c.p.conns, c)
	c.p.mu.Unlock()
}
