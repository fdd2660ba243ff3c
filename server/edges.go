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

// maxRejecting bounds the connections being turned away at once; beyond
// it, a rejected connection is closed without an answer.
const maxRejecting = 64

// connLimits counts open connections, in total and per client address.
type connLimits struct {
	s         *Server
	total     atomic.Int64
	mu        sync.Mutex
	perClient map[netip.Addr]int
	rejecting chan struct{}
	rejected  *prometheus.CounterVec
	// answer is the whole HTTP response of a rejected connection.
	answer []byte
}

func newConnLimits(s *Server, reg prometheus.Registerer) (*connLimits, error) {
	body := problemBody(Problem{Status: 503, Detail: "too many connections; retry later"}, "", "")
	l := &connLimits{
		s:         s,
		perClient: make(map[netip.Addr]int),
		rejecting: make(chan struct{}, maxRejecting),
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

// reject answers c with the 503 and closes it, off the accept loop. It
// reads what the client sent meanwhile, briefly, so that closing does not
// reset the connection before the client has read the answer.
func (l *connLimits) reject(c net.Conn, cap string) {
	l.rejected.WithLabelValues(cap).Inc()
	select {
	case l.rejecting <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.rejecting }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second)) //nolint:errcheck // a closed socket fails the write below
		if _, err := c.Write(l.answer); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite() //nolint:errcheck // the close below ends it anyway
		}
		io.Copy(io.Discard, io.LimitReader(c, 64<<10)) //nolint:errcheck // until EOF, the deadline or the limit
	}()
}

// countedConn gives its place back when closed, once.
type countedConn struct {
	net.Conn
	l       *connLimits
	client  netip.Addr
	counted bool
	closed  atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c)
	}
	return c.Conn.Close()
}
