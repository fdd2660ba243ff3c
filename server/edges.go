package server

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/api-perf/api-perf/internal/promreg"
)

// The edge of the server: how many connections it holds, for everyone and
// for one client. A connection over either cap is answered at once with a
// 503 problem and closed, before fasthttp spends a goroutine and buffers on
// it: shedding load fast beats queueing it, and one client opening thousands
// of idle connections must not use up what everyone shares. Trusted proxies
// carry many clients on their connections, so only the total applies to
// them. Slow clients are the read timeout's (see deadline.go).

// Defaults of the caps.
const (
	DefaultMaxConns          = 10_000
	DefaultMaxConnsPerClient = 512
	DefaultMaxHeaderBytes    = 8 << 10
)

// connLimits counts open connections, in total and per client address.
type connLimits struct {
	s         *Server
	total     atomic.Int64
	mu        sync.Mutex
	perClient map[netip.Addr]int
	lingering chan struct{}
	rejected  *prometheus.CounterVec
	// answer is the whole HTTP response of a rejected connection.
	answer []byte
}

func newConnLimits(s *Server, reg prometheus.Registerer) (*connLimits, error) {
	body := problemBody(Problem{Status: 503, Detail: "too many connections; retry later"}, "", "")
	l := &connLimits{
		s:         s,
		perClient: make(map[netip.Addr]int),
		lingering: make(chan struct{}, maxLingering),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiperf_http_connections_rejected_total",
			Help: "Connections answered 503 and closed on accepting them, by the cap they exceeded (total, client).",
		}, []string{"cap"}),
		answer: []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: " + problemContentType +
			"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)),
	}
	if reg != nil {
		var err error
		if l.rejected, err = promreg.Register(reg, l.rejected); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// limitListener counts the connections it hands out and turns away those
// over a cap.
type limitListener struct {
	net.Listener
	l *connLimits
}

func (ln limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if cc := ln.l.admit(c); cc != nil {
			return cc, nil
		}
	}
}

// clientOf is the address a connection is counted under: the peer's,
// IPv6 grouped as the limiter groups it; ok is false for a trusted proxy.
func (l *connLimits) clientOf(c net.Conn) (netip.Addr, bool) {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false // a Unix socket: no address to count
	}
	a := ta.AddrPort().Addr().Unmap()
	if l.s.trusted(a) {
		return netip.Addr{}, false
	}
	if a.Is6() && l.s.cfg.IPv6Prefix < 128 {
		if p, err := a.Prefix(l.s.cfg.IPv6Prefix); err == nil {
			a = p.Addr()
		}
	}
	return a, true
}

// admit returns c counted, or nil after turning it away.
func (l *connLimits) admit(c net.Conn) net.Conn {
	if l.total.Add(1) > int64(l.s.cfg.MaxConns) {
		l.total.Add(-1)
		l.reject(c, "total")
		return nil
	}
	cc := &countedConn{Conn: c, l: l}
	if a, ok := l.clientOf(c); ok {
		l.mu.Lock()
		n := l.perClient[a]
		if n >= l.s.cfg.MaxConnsPerClient {
			l.mu.Unlock()
			l.total.Add(-1)
			l.reject(c, "client")
			return nil
		}
		l.perClient[a] = n + 1
		l.mu.Unlock()
		cc.client, cc.counted = a, true
	}
	return cc
}

func (l *connLimits) release(cc *countedConn) {
	l.total.Add(-1)
	if !cc.counted {
		return
	}
	l.mu.Lock()
	if n := l.perClient[cc.client]; n <= 1 {
		delete(l.perClient, cc.client)
	} else {
		l.perClient[cc.client] = n - 1
	}
	l.mu.Unlock()
}

// reject answers c with the 503 and closes it, off the accept loop.
func (l *connLimits) reject(c net.Conn, cap string) {
	l.rejected.WithLabelValues(cap).Inc()
	l.linger(c, l.answer, nil)
}

// Lingering close. Closing a socket whose receive buffer still holds
// unread bytes makes the kernel reset the connection, and a reset can
// destroy the answer before the client reads it: a client still sending
// 64 KiB of headers sees "broken pipe" instead of its 431. So a connection
// the server gives up on while the client may still be sending (turned
// away at accept, or after a transport error) is closed in stages: the
// answer, then a FIN (CloseWrite), then what the client still sends is
// read and dropped until it closes too, up to lingerBytes or lingerTime.
// At most maxLingering connections linger at once, each in a goroutine of
// its own, outside fasthttp's workers; past that they are closed at once.
const (
	maxLingering = 64
	lingerTime   = time.Second
	lingerBytes  = 1 << 20
)

// linger writes answer (if any) to c, then closes it in stages off the
// caller's goroutine, and calls done (if any) once c is closed.
func (l *connLimits) linger(c net.Conn, answer []byte, done func()) {
	select {
	case l.lingering <- struct{}{}:
	default:
		c.Close()
		if done != nil {
			done()
		}
		return
	}
	go func() {
		defer func() { <-l.lingering }()
		if done != nil {
			defer done()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(lingerTime)) //nolint:errcheck // a closed socket fails the write or read below
		if len(answer) > 0 {
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite() //nolint:errcheck // the close above ends it anyway
		}
		io.Copy(io.Discard, io.LimitReader(c, lingerBytes)) //nolint:errcheck // until EOF, the deadline or the limit
	}()
}

// lingeringConns is how many connections are closing in stages now; each
// is closed, and has given its place back, before it stops counting.
func (l *connLimits) lingeringConns() int { return len(l.lingering) }

// countedConn gives its place back when closed, once. Marked by
// lingerOnClose, it closes in stages (see linger) and gives its place back
// only then.
type countedConn struct {
	net.Conn
	l         *connLimits
	client    netip.Addr
	counted   bool
	closed    atomic.Bool
	lingerReq atomic.Bool
}

// lingerOnClose asks for a lingering close: the client may still be
// sending. fasthttp calls it, through the error handler, from the
// goroutine that later closes the connection.
func (c *countedConn) lingerOnClose() { c.lingerReq.Store(true) }

func (c *countedConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.Conn.Close()
	}
	if c.lingerReq.Load() {
		c.l.linger(c.Conn, nil, func() { c.l.release(c) })
		return nil
	}
	c.l.release(c)
	return c.Conn.Close()
}

// lingerer is a connection that can be asked for a lingering close.
type lingerer interface{ lingerOnClose() }

// lingerOnClose marks c, or the connection it wraps, for a lingering
// close; connections of other kinds (Lambda's) are left alone.
func lingerOnClose(c net.Conn) {
	if l, ok := c.(lingerer); ok {
		l.lingerOnClose()
	}
}
